"""What the fair queue shows through the API: priorities, the cap on queued tasks, backlogs
on /metrics."""

from __future__ import annotations

import pytest

from colsum.task import TaskStatus

LOCAL = {"storage": "local", "path": "sample.csv"}


def test_a_task_is_normal_priority_unless_asked_otherwise(client):
    assert client.post("/tasks", json=LOCAL).get_json()["priority"] == "normal"
    asked = client.post("/tasks", json={**LOCAL, "priority": "high"}).get_json()
    assert asked["priority"] == "high"


def test_a_priority_the_spec_does_not_list_is_400(client):
    response = client.post("/tasks", json={**LOCAL, "priority": "urgent"})
    assert response.status_code == 400
    assert "priority" in response.get_json()["error"]


def test_an_upload_takes_its_priority_from_the_query(client):
    response = client.post("/tasks?priority=low", data=b"a\n1\n", content_type="text/csv")
    assert response.get_json()["priority"] == "low"


@pytest.mark.settings(max_queued_per_client=2)
def test_a_client_past_its_queued_cap_gets_429_with_retry_after_and_nothing_is_kept(client, store):
    for _ in range(2):
        assert client.post("/tasks", json=LOCAL).status_code == 202
    refused = client.post("/tasks", json=LOCAL)
    assert refused.status_code == 429
    assert "2 tasks queued" in refused.get_json()["error"]
    assert refused.headers["Retry-After"]
    assert store.counts()["queued"] == 2


@pytest.mark.settings(max_queued_per_client=1)
def test_an_upload_refused_for_the_cap_leaves_no_file(client, settings):
    assert client.post("/tasks", json=LOCAL).status_code == 202
    refused = client.post("/tasks", data=b"a\n1\n", content_type="text/csv")
    assert refused.status_code == 429
    uploads = settings.data_dir / "uploads"
    assert not uploads.exists() or not any(path.is_file() for path in uploads.rglob("*"))


@pytest.mark.settings(dispatch_window=1)
def test_tasks_beyond_the_window_are_queued_and_counted_in_the_backlog_gauge(client, store):
    ids = [client.post("/tasks", json=LOCAL).get_json()["id"] for _ in range(3)]
    assert {store.get(task_id).status for task_id in ids} == {TaskStatus.QUEUED}
    assert client.get("/tasks/active").get_json()["queued"] == 3
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'colsum_backlog_tasks{client="anonymous"} 2.0' in metrics
