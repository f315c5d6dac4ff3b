"""The client registry (colsum/clients.py) and the /clients routes, for the admin only."""

from __future__ import annotations

import hashlib

import pytest
import redis

from colsum.clients import ClientExists, ClientRegistry, InvalidClient, NoSuchClient
from tests.backend.test_auth import ADMIN, auth_on, bearer, new_client


@pytest.fixture
def registry(settings) -> ClientRegistry:
    return ClientRegistry(
        redis.Redis.from_url(settings.redis_url, decode_responses=True), settings.redis_prefix
    )


def test_a_token_is_stored_only_as_its_sha256(registry, settings):
    token = registry.create("acme", weight=3)
    assert token.startswith("cs_") and len(token) >= 3 + 43
    raw = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    prefix = settings.redis_prefix
    hashed = hashlib.sha256(token.encode()).hexdigest()
    assert raw.get(f"{prefix}token:{hashed}") == "acme"
    assert raw.smembers(f"{prefix}client:acme:tokens") == {hashed}
    assert raw.sismember(f"{prefix}clients", "acme")
    record = raw.hgetall(f"{prefix}client:acme")
    assert record["name"] == "acme" and record["weight"] == "3" and record["created_at"]
    everything = [raw.dump(key) for key in raw.scan_iter(match=f"{prefix}*")]
    assert not any(token.encode() in value for value in everything)


def test_the_weight_defaults_to_1(registry, settings):
    registry.create("acme")
    assert registry.get("acme").weight == 1


def test_a_token_names_its_client_until_revoked(registry):
    first = registry.create("acme")
    second = registry.issue("acme")
    assert registry.client_of(first) == registry.client_of(second) == "acme"
    assert registry.revoke("acme") == 2
    assert registry.client_of(first) is None and registry.client_of(second) is None
    assert registry.get("acme").revoked_at is not None  # the record stays


def test_a_new_token_lets_a_revoked_client_back_in(registry):
    registry.create("acme")
    registry.revoke("acme")
    token = registry.issue("acme")
    assert registry.client_of(token) == "acme"
    assert registry.get("acme").revoked_at is None


def test_a_client_is_created_once(registry):
    registry.create("acme")
    with pytest.raises(ClientExists):
        registry.create("acme")
    registry.revoke("acme")
    with pytest.raises(ClientExists):  # the name stays its: its tasks carry it
        registry.create("acme")


@pytest.mark.parametrize(
    "name", ["anonymous", "admin", "uploads", "Acme", "-acme", "a" * 64, "", "ac me"]
)
def test_names_are_the_specs_and_not_reserved_ones(registry, name):
    with pytest.raises(InvalidClient):
        registry.create(name)


@pytest.mark.parametrize("weight", [0, -1, 1.5, True, "2"])
def test_a_weight_is_an_integer_of_at_least_1(registry, weight):
    with pytest.raises(InvalidClient):
        registry.create("acme", weight)


def test_unknown_clients_have_nothing_to_revoke_or_issue(registry):
    with pytest.raises(NoSuchClient):
        registry.revoke("nobody")
    with pytest.raises(NoSuchClient):
        registry.issue("nobody")


def test_an_unknown_token_names_nobody(registry):
    registry.create("acme")
    assert registry.client_of("cs_not-a-token") is None


def test_a_token_key_its_client_no_longer_lists_names_nobody(registry, settings):
    token = registry.create("acme")
    hashed = hashlib.sha256(token.encode()).hexdigest()
    registry.redis.srem(f"{settings.redis_prefix}client:acme:tokens", hashed)  # by hand
    assert registry.client_of(token) is None


# The routes


@auth_on
def test_post_clients_answers_201_with_the_token_shown_once(client):
    response = client.post("/clients", json={"name": "acme", "weight": 2}, headers=bearer(ADMIN))
    assert response.status_code == 201
    body = response.get_json()
    assert body["client"] == "acme" and body["token"].startswith("cs_")
    listed = client.get("/clients", headers=bearer(ADMIN)).get_json()["clients"]
    assert body["token"] not in str(listed)


@auth_on
def test_post_clients_of_an_existing_name_is_409(client):
    new_client(client)
    response = client.post("/clients", json={"name": "acme"}, headers=bearer(ADMIN))
    assert response.status_code == 409
    assert "exists" in response.get_json()["error"]


@auth_on
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "admin"}, "'name': 'admin' is reserved"),
        ({"name": "Acme"}, "'name': must be 1 to 63 lowercase letters"),
        ({"name": "acme", "weight": 0}, "'weight'"),
        ({"weight": 1}, "'name' is required"),
        ({"name": "acme", "colour": "red"}, "unknown field 'colour'"),
    ],
)
def test_post_clients_refuses_what_the_spec_does_not_allow(client, body, message):
    response = client.post("/clients", json=body, headers=bearer(ADMIN))
    assert response.status_code == 400
    assert message in response.get_json()["error"]


@auth_on
def test_get_clients_lists_each_with_its_weight_tokens_and_counts(client):
    token = new_client(client, "acme")
    client.post("/clients", json={"name": "globex", "weight": 3}, headers=bearer(ADMIN))
    client.post("/tasks", json={"storage": "local", "path": "a.csv"}, headers=bearer(token))
    listed = client.get("/clients", headers=bearer(ADMIN)).get_json()["clients"]
    summary = {c["client"]: (c["weight"], c["tokens"], c["queued"], c["active"]) for c in listed}
    assert summary == {"acme": (1, 1, 1, 1), "globex": (3, 1, 0, 0)}


@auth_on
def test_delete_client_revokes_its_tokens_and_keeps_its_tasks(client):
    token = new_client(client)
    task = client.post(
        "/tasks", json={"storage": "local", "path": "a.csv"}, headers=bearer(token)
    ).get_json()
    response = client.delete("/clients/acme", headers=bearer(ADMIN))
    assert response.get_json() == {"client": "acme", "revoked_tokens": 1}
    assert client.get(f"/tasks/{task['id']}", headers=bearer(ADMIN)).get_json()["client"] == "acme"
    listed = client.get("/clients", headers=bearer(ADMIN)).get_json()["clients"]
    assert [(c["client"], c["tokens"]) for c in listed] == [("acme", 0)]


@auth_on
def test_post_tokens_issues_another_that_works_beside_the_first(client):
    first = new_client(client)
    response = client.post("/clients/acme/tokens", headers=bearer(ADMIN))
    assert response.status_code == 201
    second = response.get_json()["token"]
    assert second != first
    for token in (first, second):
        assert client.get("/tasks", headers=bearer(token)).status_code == 200


@auth_on
@pytest.mark.parametrize(
    ("method", "path"), [("DELETE", "/clients/nobody"), ("POST", "/clients/nobody/tokens")]
)
def test_an_unknown_client_is_404(client, method, path):
    response = client.open(path, method=method, headers=bearer(ADMIN))
    assert response.status_code == 404
    assert response.get_json() == {"error": "no client named 'nobody'"}


@auth_on
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/clients"),
        ("GET", "/clients"),
        ("DELETE", "/clients/acme"),
        ("POST", "/clients/acme/tokens"),
    ],
)
def test_a_client_token_may_not_manage_clients(client, method, path):
    token = new_client(client)
    response = client.open(path, method=method, json={"name": "evil"}, headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json() == {"error": "only the admin token may do this"}


@auth_on
@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"\x98t", "application/json", 400),
        (b"[1]", "application/json", 400),
        (b"x", "text/plain", 415),
    ],
)
def test_post_clients_of_a_body_that_is_no_json_object_is_a_4xx(client, data, content_type, status):
    headers = {**bearer(ADMIN), "Content-Type": content_type}
    response = client.post("/clients", data=data, headers=headers)
    assert response.status_code == status
    assert response.get_json()["error"]
