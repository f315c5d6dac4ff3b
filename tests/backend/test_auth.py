"""Who may call: open mode without ADMIN_TOKEN; with it, a token on every route but health
and docs, the admin's or a client's, checked on every request."""

from __future__ import annotations

import base64
import uuid

import pytest
import yaml

from backend import create_app
from backend.docs import SPEC
from backend.validation import template

ADMIN = "admin-token-for-tests"
SERVED_BY_LIBRARIES = {"/static/<path:filename>", "/docs/", "/docs/<path:path>"}
auth_on = pytest.mark.settings(admin_token=ADMIN)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{token}".encode()).decode()}


def operations() -> list[tuple[str, str, bool]]:
    """Every (method, path, protected) the spec lists."""
    document = yaml.safe_load(SPEC.read_text())
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "delete", "put", "patch"):
                found.append((method, path, operation.get("security") != []))
    return found


def concrete(path: str) -> str:
    return path.replace("{task_id}", uuid.uuid4().hex).replace("{name}", "acme")


def new_client(client, name: str = "acme") -> str:
    response = client.post("/clients", json={"name": name}, headers=bearer(ADMIN))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


# Open mode


def test_open_mode_needs_no_token_and_everyone_is_anonymous(client):
    response = client.post("/tasks", json={"storage": "local", "path": "a.csv"})
    assert response.status_code == 202
    assert response.get_json()["client"] == "anonymous"
    assert client.get(f"/tasks/{response.get_json()['id']}").status_code == 200


def test_open_mode_keeps_the_active_counts_as_they_were(client):
    client.post("/tasks", json={"storage": "local", "path": "a.csv"})
    assert client.get("/tasks/active").get_json() == {"active": 1, "queued": 1, "running": 0}


def test_open_mode_says_in_the_log_once_that_auth_is_off(services):
    services.backend()
    log = services.started[0].log
    assert log.count("ADMIN_TOKEN is not set: authentication is off") == 1, log


def test_open_mode_refuses_to_manage_clients(client):
    response = client.post("/clients", json={"name": "acme"})
    assert response.status_code == 403
    assert "ADMIN_TOKEN" in response.get_json()["error"]


# Every route needs a token


@auth_on
@pytest.mark.parametrize(
    ("method", "path"),
    [(method, path) for method, path, protected in operations() if protected],
)
def test_every_protected_operation_without_a_token_is_401_naming_the_scheme(client, method, path):
    response = client.open(concrete(path), method=method.upper(), json={})
    assert response.status_code == 401
    assert "token" in response.get_json()["error"]
    scheme = "Basic" if path in ("/", "/dashboard/live") else "Bearer"
    assert response.headers["WWW-Authenticate"].startswith(scheme)


@auth_on
@pytest.mark.parametrize(
    ("method", "path"),
    [(method, path) for method, path, protected in operations() if protected],
)
def test_every_protected_operation_with_an_unknown_token_is_401(client, method, path):
    headers = bearer("cs_" + "x" * 43)
    response = client.open(concrete(path), method=method.upper(), json={}, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {
        "error": "a valid token is required; the operator issues tokens (POST /clients)"
    }


@auth_on
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.yaml", "/docs/", "/docs"])
def test_health_and_docs_need_no_token(client, path):
    assert client.get(path).status_code in (200, 308)


@auth_on
def test_every_route_the_app_serves_is_in_the_spec_so_the_401_test_covers_it(app):
    documented = {(method, path) for method, path, _ in operations()}
    for rule in app.url_map.iter_rules():
        if rule.rule in SERVED_BY_LIBRARIES:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method.lower(), template(rule.rule)) in documented, rule.rule


# Admin and client tokens


@auth_on
def test_the_admin_token_is_the_admin(client):
    response = client.post(
        "/tasks", json={"storage": "local", "path": "a.csv"}, headers=bearer(ADMIN)
    )
    assert response.status_code == 202
    assert response.get_json()["client"] == "admin"


@auth_on
def test_a_client_token_names_its_client_on_the_tasks_it_creates(client):
    token = new_client(client)
    response = client.post(
        "/tasks", json={"storage": "local", "path": "a.csv"}, headers=bearer(token)
    )
    assert response.status_code == 202
    assert response.get_json()["client"] == "acme"


@auth_on
def test_a_revoked_token_fails_on_the_very_next_request(client):
    token = new_client(client)
    assert client.get("/tasks", headers=bearer(token)).status_code == 200
    assert client.delete("/clients/acme", headers=bearer(ADMIN)).status_code == 200
    assert client.get("/tasks", headers=bearer(token)).status_code == 401


@auth_on
def test_a_revocation_in_another_backend_process_counts_at_once(client, settings):
    token = new_client(client)
    assert client.get("/tasks/active", headers=bearer(token)).status_code == 200
    other = create_app(settings).test_client()  # another gunicorn worker, say
    assert other.delete("/clients/acme", headers=bearer(ADMIN)).status_code == 200
    assert client.get("/tasks/active", headers=bearer(token)).status_code == 401


@auth_on
def test_the_dashboard_takes_the_token_as_the_basic_auth_password(client):
    token = new_client(client)
    page = client.get("/", headers=basic(token))
    assert page.status_code == 200
    assert client.get("/dashboard/live", headers=basic(token)).status_code == 200
    assert client.get("/", headers=basic("wrong")).status_code == 401


@auth_on
def test_the_dashboards_form_posts_tasks_with_the_browsers_basic_credentials(client):
    token = new_client(client)
    response = client.post(
        "/tasks", json={"storage": "local", "path": "a.csv"}, headers=basic(token)
    )
    assert response.status_code == 202
    assert response.get_json()["client"] == "acme"


@auth_on
def test_the_dashboards_static_files_need_no_token(client):
    assert client.get("/static/dashboard.js").status_code == 200


@auth_on
def test_metrics_are_the_admins(client):
    token = new_client(client)
    assert client.get("/metrics", headers=bearer(ADMIN)).status_code == 200
    response = client.get("/metrics", headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json() == {"error": "/metrics needs the admin token"}


@auth_on
def test_a_token_in_the_query_string_is_not_a_credential(client):
    response = client.get(f"/tasks?token={ADMIN}")
    assert response.status_code == 401


# Ownership


def a_task(client, token: str) -> str:
    response = client.post(
        "/tasks", json={"storage": "local", "path": "a.csv"}, headers=bearer(token)
    )
    assert response.status_code == 202
    return response.get_json()["id"]


@auth_on
@pytest.mark.parametrize(("method", "query"), [("GET", ""), ("GET", "?wait=5"), ("DELETE", "")])
def test_another_clients_task_is_404_as_an_unknown_id_is(client, method, query):
    acme, globex = new_client(client, "acme"), new_client(client, "globex")
    task_id, unknown = a_task(client, acme), uuid.uuid4().hex
    theirs = client.open(f"/tasks/{task_id}{query}", method=method, headers=bearer(globex))
    nobodys = client.open(f"/tasks/{unknown}{query}", method=method, headers=bearer(globex))
    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.get_json()["error"] == nobodys.get_json()["error"].replace(unknown, task_id)
    assert client.get(f"/tasks/{task_id}", headers=bearer(acme)).get_json()["status"] == "queued"


@auth_on
def test_the_admin_sees_and_cancels_any_clients_task(client):
    task_id = a_task(client, new_client(client))
    assert client.get(f"/tasks/{task_id}", headers=bearer(ADMIN)).status_code == 200
    response = client.delete(f"/tasks/{task_id}", headers=bearer(ADMIN))
    assert response.get_json()["status"] == "cancelled"


@auth_on
def test_a_client_lists_only_its_own_tasks(client):
    acme, globex = new_client(client, "acme"), new_client(client, "globex")
    mine = {a_task(client, acme), a_task(client, acme)}
    a_task(client, globex)
    listed = client.get("/tasks", headers=bearer(acme)).get_json()["tasks"]
    assert {task["id"] for task in listed} == mine


@auth_on
def test_the_admin_lists_everyones_tasks_and_filters_by_client(client):
    acme, globex = new_client(client, "acme"), new_client(client, "globex")
    theirs = a_task(client, acme)
    others = a_task(client, globex)
    every = client.get("/tasks", headers=bearer(ADMIN)).get_json()["tasks"]
    assert {task["id"] for task in every} == {theirs, others}
    filtered = client.get("/tasks?client=acme", headers=bearer(ADMIN)).get_json()["tasks"]
    assert [task["id"] for task in filtered] == [theirs]


@auth_on
def test_a_client_naming_another_client_in_the_list_is_403_whether_it_exists_or_not(client):
    acme = new_client(client, "acme")
    new_client(client, "globex")
    for name in ("globex", "nobody"):
        response = client.get(f"/tasks?client={name}", headers=bearer(acme))
        assert response.status_code == 403
    assert client.get("/tasks?client=acme", headers=bearer(acme)).status_code == 200


@auth_on
def test_active_counts_are_the_callers_and_the_admin_also_gets_all(client):
    acme, globex = new_client(client, "acme"), new_client(client, "globex")
    a_task(client, acme)
    a_task(client, globex)
    a_task(client, globex)
    assert client.get("/tasks/active", headers=bearer(acme)).get_json() == {
        "active": 1,
        "queued": 1,
        "running": 0,
    }
    assert client.get("/tasks/active", headers=bearer(ADMIN)).get_json() == {
        "active": 0,
        "queued": 0,
        "running": 0,
        "all": {"active": 3, "queued": 3, "running": 0},
    }


@auth_on
def test_an_upload_belongs_to_its_client_and_takes_a_priority(client):
    token = new_client(client)
    response = client.post(
        "/tasks?priority=high",
        data=b"a,b\n1,2\n",
        headers={**bearer(token), "Content-Type": "text/csv"},
    )
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["client"] == "acme"
    assert response.get_json()["priority"] == "high"


@auth_on
def test_no_route_shows_a_client_another_clients_task(client, store):
    acme, globex = new_client(client, "acme"), new_client(client, "globex")
    task_id = a_task(client, acme)
    # An executor summing acme's task, as its heartbeat says.
    store.heartbeat("host:1", {"id": "host:1", "current_task": task_id}, ttl=60)
    seen = []
    for method, path, protected in operations():
        if method == "get" and protected and "{" not in path:
            response = client.get(path, headers=bearer(globex))
            if response.status_code == 200:
                seen.append(path)
                # Not even the 8 digits the dashboard shows of an id.
                assert task_id[:8] not in response.get_data(as_text=True), path
    assert {"/tasks", "/tasks/active", "/executors", "/", "/dashboard/live"} <= set(seen)
    executors = client.get("/executors", headers=bearer(acme)).get_json()["executors"]
    assert [executor["current_task"] for executor in executors] == [task_id]


@auth_on
def test_the_dashboard_shows_only_the_callers_tasks(client, store):
    acme, globex = new_client(client, "acme"), new_client(client, "globex")
    mine, theirs = a_task(client, acme), a_task(client, globex)
    page = client.get("/dashboard/live", headers=basic(acme)).get_data(as_text=True)
    assert mine[:8] in page
    assert theirs[:8] not in page


@auth_on
@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer " + "x" * 8000,
        "Bearer cs_\u00e9\u20ac",
        "Bearer \x00",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"me:\xff\xfe").decode(),
        "Digest username=me",
        "bearer " + ADMIN[:-1],
    ],
    ids=[
        "empty",
        "8000-chars",
        "non-ascii",
        "nul",
        "bad-base64",
        "no-colon",
        "not-utf8",
        "other-scheme",
        "admin-token-but-one",
    ],
)
def test_a_malformed_or_wrong_authorization_is_401_never_an_error(client, authorization):
    response = client.get("/tasks", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert "token" in response.get_json()["error"]
