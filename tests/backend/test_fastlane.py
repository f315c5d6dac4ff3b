"""GET /tasks/<id> and GET /tasks/active answered before Flask (backend/fastlane.py) say
exactly what the Flask views say, and step aside for everything else."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from colsum import jsoncodec
from colsum.task import LocalSource, Task, TaskStatus
from tests.backend.test_auth import ADMIN, auth_on, bearer, new_client

BIG = 10**5000  # a sum past Python's int <-> str limit: jsoncodec's exact path
NOBODY = "0" * 32  # no task has this id (ids are uuid4s)


def put(store, client: str = "anonymous", **fields) -> Task:
    task = Task(source=LocalSource(storage="local", path="a.csv"), client=client, **fields)
    store.redis.hset(store.keys.task(task.id), mapping=task.to_redis())
    return task


def both(app, client, path: str, headers: dict | None = None):
    """(fast lane's answer, Flask's answer), each as (status, content type, length, body)."""
    answers = []
    for enabled in (True, False):
        app.wsgi_app.enabled = enabled
        response = client.get(path, headers=headers or {})
        answers.append(
            (
                response.status_code,
                response.headers["Content-Type"],
                response.headers["Content-Length"],
                response.data,
            )
        )
    app.wsgi_app.enabled = True
    return answers


def flask_unused(app, monkeypatch) -> None:
    def refuse(environ, start_response):
        raise AssertionError(f"Flask answered {environ['PATH_INFO']}")

    monkeypatch.setattr(app.wsgi_app, "inner", refuse)


def test_a_done_task_reads_the_same_from_the_fast_lane_and_from_flask(app, client, store):
    result = {"rows": 2, "columns": [{"column": 10, "name": "j", "sum": Decimal("1.5")}]}
    task = put(
        store,
        status=TaskStatus.DONE,
        result=result,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:01Z",
        bytes_read=10,
        bytes_total=10,
    )
    fast, slow = both(app, client, f"/tasks/{task.id}")
    assert fast == slow
    assert fast[0] == 200


def test_a_sum_beyond_the_int_text_limit_reads_the_same(app, client, store):
    result = {"rows": 1, "columns": [{"column": 10, "name": None, "sum": BIG}]}
    task = put(store, status=TaskStatus.DONE, result=result)
    fast, slow = both(app, client, f"/tasks/{task.id}")
    assert fast == slow


@pytest.mark.parametrize("status", [TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.FAILED])
def test_tasks_in_every_state_read_the_same(app, client, store, status):
    task = put(store, status=status, error="boom" if status is TaskStatus.FAILED else None)
    assert both(app, client, f"/tasks/{task.id}")[0] == both(app, client, f"/tasks/{task.id}")[1]


def test_names_beyond_ascii_read_the_same(app, client, store):
    task = Task(source=LocalSource(path="données/été ✓.csv", filename="été ✓.csv"))
    store.redis.hset(store.keys.task(task.id), mapping=task.to_redis())
    fast, slow = both(app, client, f"/tasks/{task.id}")
    assert fast == slow
    assert "été ✓.csv" in fast[3].decode()


def test_a_dropped_connection_of_the_fast_lane_costs_no_request(app, client, store, monkeypatch):
    task = put(store)
    assert client.get(f"/tasks/{task.id}").status_code == 200  # the lane has its connection
    found = app.extensions["colsum"].store
    (lane_id,) = found._quickly(("CLIENT", "ID"))
    store.redis.client_kill_filter(_id=lane_id)
    flask_unused(app, monkeypatch)
    assert client.get(f"/tasks/{task.id}").get_json()["id"] == task.id
    assert client.get("/tasks/active").status_code == 200
    assert found._quickly(("CLIENT", "ID")) != [lane_id]


def test_the_fast_lane_answers_without_flask(app, client, store, monkeypatch):
    task = put(store)
    flask_unused(app, monkeypatch)
    assert client.get(f"/tasks/{task.id}").status_code == 200
    assert client.get("/tasks/active").get_json()["active"] >= 0


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/tasks/{NOBODY}", 404),
        (f"/tasks/{NOBODY}?wait=0", 404),
        (f"/tasks/{NOBODY}?wiat=1", 400),
        ("/tasks/active?x=1", 400),
    ],
)
def test_what_is_not_a_plain_read_of_a_task_goes_to_flask(app, client, path, status):
    fast, slow = both(app, client, path)
    assert fast == slow
    assert fast[0] == status


def test_a_broken_record_goes_to_flask(app, client, store):
    task_id = uuid.uuid4().hex
    store.redis.hset(store.keys.task(task_id), mapping={"id": task_id, "status": "weird"})
    fast, slow = both(app, client, f"/tasks/{task_id}")
    assert fast == slow
    assert fast[0] == 404


@auth_on
def test_with_tokens_each_client_reads_its_own_the_same_way(app, client, store):
    acme = new_client(client, "acme")
    other = new_client(client, "other")
    task = put(store, client="acme")
    for headers in (bearer(acme), bearer(other), bearer(ADMIN), bearer("wrong"), None):
        fast, slow = both(app, client, f"/tasks/{task.id}", headers)
        assert fast == slow
        fast, slow = both(app, client, "/tasks/active", headers)
        assert fast == slow
    assert both(app, client, f"/tasks/{task.id}", bearer(other))[0][0] == 404
    assert both(app, client, f"/tasks/{task.id}", None)[0][0] == 401


def test_the_active_counts_read_the_same(app, client, store):
    put(store)
    fast, slow = both(app, client, "/tasks/active")
    assert fast == slow


def test_a_fast_answer_is_counted_as_flask_counts_it(app, client, store):
    from backend.metrics import REQUESTS

    task = put(store)
    series = REQUESTS.labels("GET", "/tasks/<task_id:task_id>", "200")
    before = series._value.get()
    client.get(f"/tasks/{task.id}")
    assert series._value.get() == before + 1


@pytest.mark.settings(rate_limit="1000/second")
def test_with_rate_limits_every_request_goes_to_flask(app, client, store, monkeypatch):
    task = put(store)
    flask_unused(app, monkeypatch)
    with pytest.raises(AssertionError, match="Flask answered"):
        client.get(f"/tasks/{task.id}")
    with pytest.raises(AssertionError, match="Flask answered"):
        client.post("/tasks", json=TASK)


def test_a_result_kept_as_stored_text_is_served_as_the_decoded_one_would_be(store):
    from colsum import jsoncodec

    result = {"rows": 1, "columns": [{"column": 10, "name": "j", "sum": Decimal("-0.5")}]}
    record = put(store, status=TaskStatus.DONE, result=result).to_redis()
    raw = Task.from_redis(record, raw_result=True).to_json()
    decoded = Task.from_redis(record).to_json()
    assert jsoncodec.dumps(raw) == jsoncodec.dumps(decoded)


# -- POST /tasks ---------------------------------------------------------------------------

TASK = {"storage": "local", "path": "a.csv", "priority": "high"}


def posted(app, client, enabled: bool, **kwargs):
    """(status, headers, JSON) of a POST /tasks, by the lane or by Flask alone."""
    app.wsgi_app.enabled = enabled
    try:
        response = client.post("/tasks", **kwargs)
    finally:
        app.wsgi_app.enabled = True
    return response.status_code, response.headers, response.get_json()


def test_a_task_is_created_without_flask(app, client, store, monkeypatch):
    flask_unused(app, monkeypatch)
    status, headers, created = posted(app, client, True, json=TASK)
    assert status == 202
    assert headers["Location"] == f"/tasks/{created['id']}"
    assert store.get(created["id"]).source.path == "a.csv"


def test_a_task_created_by_the_lane_reads_as_one_flask_created(app, client):
    fast = posted(app, client, True, json=TASK)
    slow = posted(app, client, False, json=TASK)
    assert fast[0] == slow[0] == 202
    assert fast[1]["Content-Type"] == slow[1]["Content-Type"] == "application/json"
    assert int(fast[1]["Content-Length"]) == len(jsoncodec.encode(fast[2]))
    varying = {"id", "created_at", "queued_at", "queued_for"}
    assert fast[2].keys() == slow[2].keys()
    assert {k: v for k, v in fast[2].items() if k not in varying} == {
        k: v for k, v in slow[2].items() if k not in varying
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"storage": "local"}},  # the spec refuses it
        {"json": {"storage": "local", "path": "../etc/passwd"}},  # the task model does
        {"json": {"storage": "local", "path": "a.csv", "header": "yes"}},
        {"data": b'{"storage": "local", "path": "a.csv"', "content_type": "application/json"},
        {"data": b"\xff", "content_type": "application/json"},
        {"json": [TASK]},
        {"json": {**TASK, "callback_url": "http://127.0.0.1/hook"}},
        {"data": b"a,b\n1,2\n", "content_type": "text/csv"},
        {"data": b"{}", "content_type": "text/plain"},
    ],
)
def test_a_post_the_lane_does_not_take_gets_flasks_answer(app, client, store, kwargs):
    fast, slow = posted(app, client, True, **kwargs), posted(app, client, False, **kwargs)
    assert fast[0] == slow[0]
    if fast[0] == 202:
        assert fast[2]["status"] == slow[2]["status"] == "queued"
    else:
        assert fast[2] == slow[2]


def test_a_post_with_a_query_goes_to_flask(app, client, monkeypatch):
    flask_unused(app, monkeypatch)
    with pytest.raises(AssertionError, match="Flask answered"):
        client.post("/tasks?priority=low", json={"storage": "local", "path": "a.csv"})


@pytest.mark.settings(max_queued_per_client=1)
def test_the_lane_refuses_a_task_past_the_clients_limit_as_flask_does(app, client, store):
    assert posted(app, client, True, json=TASK)[0] == 202
    fast, slow = posted(app, client, True, json=TASK), posted(app, client, False, json=TASK)
    assert fast[0] == slow[0] == 429
    assert fast[2] == slow[2]
    assert fast[1]["Retry-After"] == slow[1]["Retry-After"]


def test_the_lane_answers_503_when_redis_is_down(app, client, monkeypatch):
    from colsum.errors import StoreUnavailable

    def down(*_args, **_kwargs):
        raise StoreUnavailable("Redis is unavailable")

    monkeypatch.setattr(app.extensions["colsum"].store, "create", down)
    fast, slow = posted(app, client, True, json=TASK), posted(app, client, False, json=TASK)
    assert fast[0] == slow[0] == 503
    assert fast[2] == slow[2]


@auth_on
def test_with_tokens_the_lane_records_the_callers_client(app, client, store, monkeypatch):
    acme = new_client(client, "acme")
    flask_unused(app, monkeypatch)
    status, _, created = posted(app, client, True, json=TASK, headers=bearer(acme))
    assert (status, created["client"]) == (202, "acme")
    with pytest.raises(AssertionError, match="Flask answered"):  # a 401 is Flask's
        client.post("/tasks", json=TASK, headers=bearer("wrong"))


def test_a_task_created_by_the_lane_is_counted_as_flask_counts_it(app, client):
    from backend.metrics import REQUESTS, TASKS_CREATED

    series = REQUESTS.labels("POST", "/tasks", "202")
    before = series._value.get(), TASKS_CREATED._value.get()
    posted(app, client, True, json=TASK)
    assert (series._value.get(), TASKS_CREATED._value.get()) == (before[0] + 1, before[1] + 1)
