"""RATE_LIMIT: tasks a client may create per window, counted per client in Redis."""

from __future__ import annotations

import pytest
import redis

from tests.backend.test_auth import ADMIN, bearer, new_client

TASK = {"storage": "local", "path": "a.csv"}


@pytest.mark.settings(admin_token=ADMIN, rate_limit="2/minute")
def test_beyond_the_limit_post_is_429_with_retry_after_and_stores_nothing(client, store):
    token = new_client(client)
    for _ in range(2):
        assert client.post("/tasks", json=TASK, headers=bearer(token)).status_code == 202
    response = client.post("/tasks", json=TASK, headers=bearer(token))
    assert response.status_code == 429
    assert response.get_json() == {
        "error": "too many tasks from this client: at most 2/minute (RATE_LIMIT)"
    }
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert store.counts()["queued"] == 2


@pytest.mark.settings(admin_token=ADMIN, rate_limit="2/minute")
def test_one_clients_flood_leaves_another_its_own_allowance(client):
    acme, globex = new_client(client, "acme"), new_client(client, "globex")
    while client.post("/tasks", json=TASK, headers=bearer(acme)).status_code == 202:
        pass
    assert client.post("/tasks", json=TASK, headers=bearer(globex)).status_code == 202


@pytest.mark.settings(admin_token=ADMIN, rate_limit="1/minute")
def test_only_creating_tasks_is_limited(client):
    token = new_client(client)
    assert client.post("/tasks", json=TASK, headers=bearer(token)).status_code == 202
    for _ in range(3):
        assert client.get("/tasks", headers=bearer(token)).status_code == 200


@pytest.mark.settings(rate_limit="1/minute")
def test_the_windows_live_in_redis_under_the_prefix(client, settings):
    assert client.post("/tasks", json=TASK).status_code == 202
    raw = redis.Redis.from_url(settings.redis_url)
    assert list(raw.scan_iter(match=f"{settings.redis_prefix}ratelimit*"))


def test_without_rate_limit_there_is_no_limit(client):
    for _ in range(5):
        assert client.post("/tasks", json=TASK).status_code == 202
