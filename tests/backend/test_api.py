"""The REST API against a real Redis and RabbitMQ, through Flask's test client."""

from __future__ import annotations

import dataclasses
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from backend import create_app
from colsum import broker
from colsum import store as task_store
from colsum.settings import Settings
from colsum.store import TaskStore
from tests.conftest import free_port
from tests.tcpproxy import TCPProxy

LOCAL = {"storage": "local", "path": "sample.csv"}
UNKNOWN = "0" * 32


def nobody(settings: Settings) -> str:
    """The AMQP URL of a port where nothing listens."""
    return urlunsplit(urlsplit(settings.amqp_url)._replace(netloc=f"127.0.0.1:{free_port()}"))


def post(client, body):
    return client.post("/tasks", json=body)


def test_post_answers_202_with_the_queued_task_and_its_location(client):
    response = post(client, {**LOCAL, "header": True})
    assert response.status_code == 202
    task = response.get_json()
    assert task["status"] == "queued"
    assert task["source"] == LOCAL
    assert task["header"] is True
    assert task["created_at"].endswith("Z")
    assert response.headers["Location"] == f"/tasks/{task['id']}"


def test_post_publishes_a_persistent_message_naming_the_task(client, channel, settings):
    task_id = post(client, LOCAL).get_json()["id"]
    method, properties, body = channel.basic_get(settings.amqp_queue, auto_ack=True)
    assert method is not None
    assert broker.decode(body) == task_id
    assert properties.delivery_mode == 2


def test_post_takes_a_delimiter_and_the_task_keeps_it(client):
    task = post(client, {**LOCAL, "delimiter": ";"}).get_json()
    assert task["delimiter"] == ";"
    assert client.get(f"/tasks/{task['id']}").get_json()["delimiter"] == ";"


def test_post_accepts_an_s3_source(client):
    body = {"storage": "s3", "bucket": "my-bucket", "key": "dir/file.csv"}
    response = post(client, body)
    assert response.status_code == 202
    assert response.get_json()["source"] == body


def test_get_shows_the_stored_task(client):
    created = post(client, LOCAL).get_json()
    response = client.get(f"/tasks/{created['id']}")
    assert response.status_code == 200
    assert response.get_json() == created


def test_get_an_unknown_task_is_404_with_a_json_error(client):
    response = client.get(f"/tasks/{UNKNOWN}")
    assert response.status_code == 404
    assert UNKNOWN in response.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"storage": "local"}, "'path' is required"),
        ({"path": "a.csv"}, "'storage' is required: 'local' or 's3'"),
        ({"storage": "ftp", "path": "a.csv"}, "'storage' must be 'local' or 's3'"),
        ({**LOCAL, "colour": "red"}, "unknown field 'colour'"),
        ({"storage": "local", "path": "/etc/passwd"}, "'path' must be relative to DATA_DIR"),
        ({"storage": "local", "path": "a/../../x.csv"}, "'path' must stay inside DATA_DIR"),
        ({"storage": "local", "path": ""}, "'path': '' should be non-empty"),
        ({"storage": "local", "path": 5}, "'path': 5 is not of type 'string'"),
        ({**LOCAL, "header": "yes"}, "'header': 'yes' is not of type 'boolean'"),
        (
            {**LOCAL, "callback_url": "ftp://host/x"},
            "'callback_url': must be an http:// or https:// URL",
        ),
        ({**LOCAL, "delimiter": ";;"}, "'delimiter': ';;' is too long"),
        ({**LOCAL, "delimiter": "."}, "'delimiter': must be one ASCII character that cannot"),
        (
            {"storage": "s3", "bucket": "Bad_Bucket", "key": "k"},
            "'bucket': must be an S3 bucket name",
        ),
        ({"storage": "s3", "bucket": "bucket"}, "'key' is required"),
        ([LOCAL], "the body must be a JSON object"),
    ],
)
def test_post_rejects_an_invalid_task_with_400_saying_what_is_wrong(client, body, message):
    response = post(client, body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_post_rejects_malformed_json_with_400(client):
    response = client.post("/tasks", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": "the request body is not valid JSON"}


def test_post_of_json_null_is_not_called_invalid_json(client):
    response = client.post("/tasks", data="null", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("the body must be a JSON object")


def test_post_neither_json_nor_csv_is_415(client):
    response = client.post("/tasks", data='{"storage":"local","path":"a"}')
    assert response.status_code == 415
    assert "application/json" in response.get_json()["error"]


def test_an_unknown_route_is_a_json_404(client):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert "error" in response.get_json()


def test_a_wrong_method_is_a_json_405(client):
    response = client.put("/tasks")
    assert response.status_code == 405
    assert "error" in response.get_json()


def test_active_counts_queued_and_running_tasks(client, store):
    first, second, _third = (post(client, LOCAL).get_json()["id"] for _ in range(3))
    store.claim(first, "executor-a", 1, lease=30)
    store.claim(second, "executor-b", 1, lease=30)
    store.complete(second, {"rows": 0, "columns": []})
    response = client.get("/tasks/active")
    assert response.status_code == 200
    assert response.get_json() == {"active": 2, "queued": 1, "running": 1}


def test_without_rabbitmq_post_is_503_and_leaves_no_task_behind(settings, store):
    client = create_app(dataclasses.replace(settings, amqp_url=nobody(settings))).test_client()
    response = post(client, LOCAL)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "error" in response.get_json()
    assert store.counts() == {"active": 0, "queued": 0, "running": 0}
    assert list(store.redis.scan_iter(match=f"{settings.redis_prefix}task:*")) == []


def test_an_upload_refused_for_want_of_rabbitmq_leaves_no_file_behind(settings):
    client = create_app(dataclasses.replace(settings, amqp_url=nobody(settings))).test_client()
    response = client.post("/tasks", data=b"a,b\n1,2\n", content_type="text/csv")
    assert response.status_code == 503
    assert [path for path in (settings.data_dir / "uploads").rglob("*") if path.is_file()] == []


def test_an_upload_the_backend_cannot_store_is_a_500_saying_what_to_fix(settings, client):
    (settings.data_dir / "uploads").write_text("a file where the folder should be")
    response = client.post("/tasks", data=b"a,b\n1,2\n", content_type="text/csv")
    assert response.status_code == 500
    message = response.get_json()["error"]
    assert "DATA_DIR/uploads" in message and "UPLOAD_BUCKET" in message


def test_without_redis_post_is_503(settings: Settings):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    client = create_app(dataclasses.replace(settings, redis_url=unreachable)).test_client()
    response = post(client, LOCAL)
    assert response.status_code == 503
    assert response.get_json() == {"error": "the task store is unavailable; try again shortly"}


@pytest.mark.settings(dispatch_window=10)  # each POST publishes, none waits
def test_a_publisher_connection_idle_past_its_heartbeat_is_reopened_quietly(settings, capfd):
    short = dataclasses.replace(settings, amqp_url=f"{settings.amqp_url}?heartbeat=1")
    client = create_app(short).test_client()
    assert post(client, LOCAL).status_code == 202
    time.sleep(4)  # the broker drops the idle connection after two missed heartbeats

    assert post(client, LOCAL).status_code == 202

    logged = capfd.readouterr().err  # create_app's logging writes to stderr, not to caplog
    assert "publisher connection lost" in logged  # it was dropped, and reopened
    assert " ERROR " not in logged and "Traceback" not in logged


@pytest.mark.settings(dispatch_window=10)  # each POST publishes, none waits
def test_a_dropped_publisher_connection_is_reopened_without_failing_a_request(settings, channel):
    target = urlsplit(settings.amqp_url)
    proxy = TCPProxy(target.hostname or "127.0.0.1", target.port or 5672)
    via_proxy = urlunsplit(
        target._replace(netloc=f"{target.username}:{target.password}@127.0.0.1:{proxy.port}")
    )
    app = create_app(dataclasses.replace(settings, amqp_url=via_proxy))
    client = app.test_client()
    try:
        assert post(client, LOCAL).status_code == 202
        proxy.cut()  # as the broker does with a connection that missed its heartbeats
        assert post(client, LOCAL).status_code == 202
    finally:
        app.extensions["colsum"].publisher.close()
        proxy.close()
    assert channel.queue_declare(settings.amqp_queue, passive=True).method.message_count == 2


def test_list_pages_newest_first_and_stays_stable_while_tasks_are_added(client):
    ids = [post(client, LOCAL).get_json()["id"] for _ in range(5)]
    first = client.get("/tasks?limit=2").get_json()
    assert [t["id"] for t in first["tasks"]] == ids[:-3:-1]
    post(client, LOCAL)  # newer tasks do not shift the pages that follow
    second = client.get(f"/tasks?limit=2&cursor={first['next_cursor']}").get_json()
    assert [t["id"] for t in second["tasks"]] == ids[2:0:-1]
    third = client.get(f"/tasks?limit=2&cursor={second['next_cursor']}").get_json()
    assert [t["id"] for t in third["tasks"]] == ids[:1]
    assert third["next_cursor"] is None


def test_list_filters_by_status(client, store):
    done, _queued = (post(client, LOCAL).get_json()["id"] for _ in range(2))
    store.claim(done, "executor-a", 1, lease=30)
    store.complete(done, {"rows": 0, "columns": []})
    listed = client.get("/tasks?status=done").get_json()["tasks"]
    assert [t["id"] for t in listed] == [done]


@pytest.mark.parametrize(
    "query", ["status=finished", "limit=0", "limit=101", "limit=x", "cursor=abc", "wait=-1"]
)
def test_bad_query_parameters_are_400(client, query):
    path = f"/tasks/{UNKNOWN}" if query.startswith("wait") else "/tasks"
    response = client.get(f"{path}?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.get_json()["error"]


def test_cancelling_a_queued_task_takes_it_out_of_the_queue(client):
    task_id = post(client, LOCAL).get_json()["id"]
    response = client.delete(f"/tasks/{task_id}")
    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"
    assert client.get("/tasks/active").get_json() == {"active": 0, "queued": 0, "running": 0}


def test_cancelling_a_finished_task_is_409(client):
    task_id = post(client, LOCAL).get_json()["id"]
    client.delete(f"/tasks/{task_id}")
    response = client.delete(f"/tasks/{task_id}")
    assert response.status_code == 409
    assert "is cancelled" in response.get_json()["error"]


def test_cancelling_an_unknown_task_is_404(client):
    assert client.delete(f"/tasks/{UNKNOWN}").status_code == 404


def test_a_long_poll_answers_when_the_task_finishes(client, store):
    task_id = post(client, LOCAL).get_json()["id"]
    finisher = threading.Timer(0.3, lambda: store.fail(task_id, "stopped"))
    finisher.start()
    started = time.monotonic()
    response = client.get(f"/tasks/{task_id}?wait=10")
    assert response.get_json()["status"] == "failed"
    assert time.monotonic() - started < 3


def test_a_long_poll_answers_with_the_current_state_after_its_time(client):
    task_id = post(client, LOCAL).get_json()["id"]
    started = time.monotonic()
    assert client.get(f"/tasks/{task_id}?wait=0.5").get_json()["status"] == "queued"
    assert 0.5 <= time.monotonic() - started < 3


def test_a_body_larger_than_64_kib_is_413(client):
    response = client.post("/tasks", json={**LOCAL, "path": "x" * 70_000})
    assert response.status_code == 413
    assert response.get_json() == {"error": "the request body is larger than 64 KiB"}


def test_the_spec_is_served(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.get_data(as_text=True).startswith("openapi: ")


def test_swagger_ui_is_served_from_the_package_not_a_cdn(client):
    page = client.get("/docs/").get_data(as_text=True)
    assert "swagger-ui-bundle.js" in page
    assert "http://" not in page.replace("http://localhost", "")
    assert "https://" not in page
    assert client.get("/docs/swagger-ui-bundle.js").status_code == 200


def test_healthz_answers_while_the_process_runs(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_is_200_when_redis_and_rabbitmq_answer(client):
    assert client.get("/readyz").get_json() == {"status": "ok", "redis": "ok", "rabbitmq": "ok"}


def test_readyz_is_503_naming_what_does_not_answer(settings):
    client = create_app(dataclasses.replace(settings, amqp_url=nobody(settings))).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert (body["status"], body["redis"]) == ("unavailable", "ok")
    assert "RabbitMQ is unavailable" in body["rabbitmq"]


def test_a_short_task_id_gets_a_404_that_says_what_an_id_is(client):
    response = client.get("/tasks/d37230bf")
    assert response.status_code == 404
    assert response.get_json()["error"] == (
        "no task with id 'd37230bf': a task id is the 32 hexadecimal digits POST /tasks gave"
    )


def test_an_unknown_task_id_is_not_told_what_an_id_looks_like(client):
    response = client.get(f"/tasks/{UNKNOWN}")
    assert response.get_json() == {"error": f"no task with id {UNKNOWN!r}"}


def test_an_unknown_path_keeps_the_general_404(client):
    assert "task id" not in client.get("/nowhere").get_json()["error"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (f"/tasks/{UNKNOWN}?wait=abc", "'wait': 'abc' is not a number"),
        ("/tasks?limit=abc", "'limit': 'abc' is not an integer"),
    ],
)
def test_a_query_parameter_of_the_wrong_type_is_named_with_its_value(client, path, message):
    response = client.get(path)
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


@pytest.mark.parametrize("wait", ["nan", "NaN", "inf", "-inf", "-1", "1e309"])
def test_a_wait_that_is_not_a_finite_number_of_seconds_is_400(client, wait):
    task_id = post(client, LOCAL).get_json()["id"]
    response = client.get(f"/tasks/{task_id}?wait={wait}")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("'wait': ")


def test_a_wait_of_nan_says_it_is_not_finite(client):
    task_id = post(client, LOCAL).get_json()["id"]
    response = client.get(f"/tasks/{task_id}?wait=nan")
    assert response.get_json() == {"error": "'wait': 'nan' is not a finite number of seconds"}


@pytest.mark.parametrize(
    "body",
    [
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 6_000 + "1" + "}" * 6_000,
        '{"storage":"local","path":"a","header":' + "[" * 900 + "]" * 900 + "}",
    ],
    ids=["arrays", "objects", "in-a-field"],
)
def test_a_deeply_nested_body_is_400_not_500(client, body):
    assert len(body) <= 64 * 1024
    response = client.post("/tasks", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "nested" in response.get_json()["error"] or "'header'" in response.get_json()["error"]


def test_a_body_nested_too_deeply_says_so(client):
    body = "[" * 10_000 + "]" * 10_000
    response = client.post("/tasks", data=body, content_type="application/json")
    assert response.get_json() == {
        "error": "the request body is nested too deeply: a task is one flat JSON object"
    }


def metric_lines(client) -> list[str]:
    text = client.get("/metrics").get_data(as_text=True)
    return [line for line in text.splitlines() if line.startswith("colsum_http_requests_total{")]


def test_request_metrics_label_an_unknown_method_other(client):
    assert client.open("/tasks", method="BREW").status_code == 405
    lines = metric_lines(client)
    assert not any('method="BREW"' in line for line in lines)
    assert any('method="other"' in line and 'status="405"' in line for line in lines)


def test_request_metrics_keep_the_known_methods(client):
    client.delete(f"/tasks/{UNKNOWN}")
    assert any('method="DELETE"' in line for line in metric_lines(client))


def test_a_task_published_whose_outbox_write_fails_is_still_202(app, settings, channel, caplog):
    """RabbitMQ has the task: it will run, so the client must get its id, not a 503."""
    found = app.extensions["colsum"]
    gone = TaskStore(task_store.connect(f"redis://127.0.0.1:{free_port()}/0"), "x:")
    found.store.published = gone.published  # Redis went away after the publish

    response = app.test_client().post("/tasks", json=LOCAL)

    assert response.status_code == 202
    task_id = response.get_json()["id"]
    _, _, body = channel.basic_get(settings.amqp_queue, auto_ack=True)
    assert broker.decode(body) == task_id
    # Still in the outbox, so the sweeper publishes it again: a duplicate is harmless.
    assert found.store.unpublished(older_than=0) == [task_id]
    assert f"task {task_id} is published, but stays in the outbox" in caplog.text


DELIMITER_MESSAGE = (
    "'delimiter': must be one ASCII character that cannot be part of a number, a quote or a "
    "line end"
)


@pytest.mark.parametrize("delimiter", ["€", "§", "\x00"])
def test_a_delimiter_that_is_not_one_ascii_character_is_400(client, delimiter):
    response = post(client, {**LOCAL, "delimiter": delimiter})
    assert response.status_code == 400
    assert response.get_json() == {"error": DELIMITER_MESSAGE}


def test_an_upload_with_a_multibyte_delimiter_is_400(client, settings):
    response = client.post("/tasks?delimiter=€", data=b"a\xe2\x82\xacb\n", content_type="text/csv")
    assert response.status_code == 400
    assert response.get_json() == {"error": DELIMITER_MESSAGE}


@pytest.mark.parametrize("delimiter", ["\t", "|", ";", " ", "\x01"])
def test_an_ascii_delimiter_is_taken(client, delimiter):
    assert post(client, {**LOCAL, "delimiter": delimiter}).status_code == 202


def test_unknown_fields_are_named_when_a_required_one_is_missing_too(client):
    response = post(client, {"storage": "local", "pth": "a.csv"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "'path' is required; unknown field 'pth'"}


def test_every_missing_field_is_named(client):
    response = post(client, {"storage": "s3"})
    assert response.get_json() == {"error": "'bucket' is required; 'key' is required"}


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("POST", "/tasks?colour=red", "unknown query parameter 'colour': POST /tasks takes"),
        ("GET", "/tasks?sort=new", "unknown query parameter 'sort': GET /tasks takes status"),
        (
            "GET",
            f"/tasks/{UNKNOWN}?wiat=30",
            "unknown query parameter 'wiat': GET /tasks/{task_id} takes wait",
        ),
        (
            "DELETE",
            f"/tasks/{UNKNOWN}?force=1",
            "unknown query parameter 'force': DELETE /tasks/{task_id} takes none",
        ),
        ("GET", "/tasks/active?wiat=30", "unknown query parameter 'wiat': GET /tasks/active"),
        ("GET", "/executors?all=1", "unknown query parameter 'all': GET /executors takes none"),
    ],
)
def test_an_unknown_query_parameter_is_400_naming_it(client, method, path, message):
    response = client.open(path, method=method, json=LOCAL if method == "POST" else None)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(message)


def test_an_upload_with_an_unknown_query_parameter_is_400_and_keeps_nothing(client, settings):
    response = client.post("/tasks?delimeter=;", data=b"a;b\n1;2\n", content_type="text/csv")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("unknown query parameter 'delimeter'")
    uploads = settings.data_dir / "uploads"
    assert not uploads.exists() or [p for p in uploads.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/tasks", {**LOCAL, "path": "../" * 10_000}),
        ("POST", "/tasks", {**LOCAL, "header": "y" * 5_000}),
        ("POST", "/tasks", {**LOCAL, "z" * 5_000: 1}),
        ("POST", f"/tasks?{'q' * 5_000}=1", LOCAL),
        ("GET", f"/tasks?limit={'x' * 5_000}", None),
        ("GET", f"/tasks?status={'x' * 5_000}", None),
        ("GET", f"/tasks/{UNKNOWN}?wait={'x' * 5_000}", None),
        ("GET", f"/tasks/{'x' * 5_000}", None),
    ],
    ids=["path", "header", "field", "parameter", "limit", "status", "wait", "task-id"],
)
def test_an_error_quotes_at_most_about_80_characters_of_a_value(client, method, path, body):
    response = client.open(path, method=method, json=body)
    assert 400 <= response.status_code < 500
    message = response.get_json()["error"]
    assert len(message) < 250, message
    assert "characters" in message or "..." in message


def test_a_value_cut_short_says_how_long_it_was(client):
    response = post(client, {**LOCAL, "path": "a" * 2_000})
    assert response.get_json() == {
        "error": f"'path': '{'a' * 80}...' (2000 characters) is too long"
    }


@pytest.mark.parametrize("path", ["/tasks", f"/tasks/{UNKNOWN}", "/tasks?limit=5"])
def test_head_is_answered_as_get_is(client, path):
    assert client.head(path).status_code == client.get(path).status_code


@pytest.mark.parametrize("query", ["status=", "cursor="])
def test_an_empty_query_parameter_is_400_naming_it(client, query):
    response = client.get(f"/tasks?{query}")
    assert response.status_code == 400
    name = query.removesuffix("=")
    assert response.get_json()["error"].startswith(f"'{name}' must not be empty")


def test_a_json_body_of_another_json_type_is_taken(client):
    response = client.post("/tasks", json=LOCAL, content_type="application/vnd.colsum+json")
    assert response.status_code == 202


def ghost(store: TaskStore) -> str:
    """A hash without id, status or TTL, such as a webhook write after the record expired
    left (older executors): listed in the index, but no task."""
    ghost_id = "f" * 32
    store.redis.hset(store.keys.task(ghost_id), mapping={"webhook_status": "delivered"})
    store.redis.zadd(store.keys.tasks, {ghost_id: 10**9})
    return ghost_id


@pytest.mark.parametrize(
    ("method", "query"), [("GET", ""), ("GET", "?wait=5"), ("DELETE", "")], ids=str
)
def test_a_broken_record_is_404_not_500(client, store, method, query):
    ghost_id = ghost(store)
    response = client.open(f"/tasks/{ghost_id}{query}", method=method)
    assert response.status_code == 404
    assert response.get_json() == {"error": f"no task with id {ghost_id!r}"}


def test_a_list_with_a_broken_record_shows_the_others(client, store):
    task_id = post(client, LOCAL).get_json()["id"]
    ghost(store)
    response = client.get("/tasks")
    assert response.status_code == 200
    assert [task["id"] for task in response.get_json()["tasks"]] == [task_id]


def test_the_dashboard_with_a_broken_record_shows_the_others(client, store):
    task_id = post(client, LOCAL).get_json()["id"]
    ghost(store)
    for path in ("/", "/dashboard/live"):
        response = client.get(path)
        assert response.status_code == 200
        assert f'data-task="{task_id}"' in response.get_data(as_text=True)


def test_a_body_that_is_not_utf8_is_400_saying_so(client):
    body = '{"storage": "local", "path": "caf\xe9.csv"}'.encode("latin-1")
    response = client.post("/tasks", data=body, content_type="application/json; charset=latin-1")
    assert response.status_code == 400
    assert response.get_json() == {"error": "the request body is not valid JSON: send it as UTF-8"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", f"/tasks?cursor={'9' * 10_000}", None, 200),
        ("GET", "/tasks?limit=1000000000", None, 400),
        ("GET", "/tasks?limit=1e9", None, 400),
        ("POST", "/tasks", "[]", 400),
        ("POST", "/tasks", '"x"', 400),
        ("POST", "/tasks", "1e400", 400),
        ("POST", "/tasks", '{"storage": "local", "path": 1e400}', 400),
        ("POST", "/tasks", '{"storage": "local", "path": "a", "path": "b"}', 202),
        (
            "POST",
            "/tasks",
            '{"storage": "local", "path": "\\u00fc/\\u2713/\\ud83d\\ude00.csv"}',
            202,
        ),
        ("POST", "/tasks", '{"storage": "local", "path": "' + "../" * 10_000 + '"}', 400),
        ("GET", "/tasks/%C3%BC%E2%9C%93", None, 404),
        ("GET", "/tasks/%ff%fe", None, 404),
        ("GET", "/tasks?status=%ff", None, 400),
    ],
)
def test_a_hostile_request_gets_a_json_answer_never_a_500(client, method, path, body, status):
    response = client.open(path, method=method, data=body, content_type="application/json")
    assert response.status_code == status
    assert response.is_json


def test_a_callback_url_to_an_internal_address_is_400_before_anything_is_stored(client, store):
    response = post(client, {**LOCAL, "callback_url": "http://127.0.0.1:6379/"})
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(
        "refused: callback_url resolves to 127.0.0.1, a loopback address"
    )
    assert store.counts()["queued"] == 0


@pytest.mark.settings(webhook_allowed_hosts=("127.0.0.1",))
def test_a_callback_url_to_an_allowed_internal_host_is_taken(client):
    response = post(client, {**LOCAL, "callback_url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 202


def test_csv_options_on_a_sum_even_task_are_refused(client):
    body = {"storage": "local", "path": "n.txt", "op": "sum_even", "header": True}
    response = client.post("/tasks", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        "'header' and 'delimiter' are options of sum_columns, not sum_even"
    )


def test_an_unknown_op_is_refused(client):
    response = client.post("/tasks", json={"storage": "local", "path": "n.txt", "op": "sum_odd"})
    assert response.status_code == 400
    assert "'op'" in response.get_json()["error"]


def test_a_csv_option_given_to_a_sum_even_task_is_refused_even_at_its_default(client):
    body = {"storage": "local", "path": "n.txt", "op": "sum_even", "delimiter": ","}
    assert client.post("/tasks", json=body).status_code == 400


def test_an_upload_for_sum_even_with_a_csv_option_is_refused(client):
    response = client.post(
        "/tasks?op=sum_even&header=true", data=b"1 2\n", headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 400
    assert "options of sum_columns" in response.get_json()["error"]
