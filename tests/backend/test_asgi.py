"""The ASGI front of the backend (backend/asgi.py), called in process: the hot reads are
answered without Flask, and a request body that stalls, stops or breaks off fails the read
that waits for it instead of holding a thread or reading as whole."""

from __future__ import annotations

import asyncio
import time

import pytest

from backend import asgi
from colsum import jsoncodec
from tests.backend.test_fastlane import put


def call(app: asgi.App, path: str) -> list[dict]:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [],
    }
    sent: list[dict] = []

    async def receive() -> dict:
        raise AssertionError("a GET's body was read")

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def body_scope(*headers: tuple[bytes, bytes], **fields: object) -> dict:
    return {"type": "http", "headers": list(headers), **fields}


def reads(scope: dict, *messages: dict, count: int | None = None) -> list:
    """What each of `count` (len(messages) + 1) reads of the bounded receive gives: a
    message or the error it raised."""
    queue = list(messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # the client says nothing more

    async def read_all() -> list:
        bounded = asgi._bounded(scope, receive)
        results = []
        for _ in range(len(messages) + 1 if count is None else count):
            try:
                results.append(await bounded())
            except OSError as error:
                results.append(error)
        return results

    return asyncio.run(read_all())


def test_a_task_is_read_on_the_event_loop_without_flask(app, store):
    task = put(store)
    front = asgi.App(app)

    async def refuse(scope, receive, send) -> None:
        raise AssertionError(f"Flask answered {scope['path']}")

    front.flask = refuse
    start, body = call(front, f"/tasks/{task.id}")
    assert start["status"] == 200
    assert jsoncodec.loads(body["body"]) == jsoncodec.loads(jsoncodec.encode(task.to_json()))
    assert dict(start["headers"])[b"content-length"] == b"%d" % len(body["body"])


def test_after_a_slow_read_reads_go_to_flask_for_a_while(app, store, monkeypatch):
    task = put(store)
    front = asgi.App(app)
    answer = front.lane.answer

    def slow(environ):
        time.sleep(asgi.SLOW_READ * 1.5)  # Redis hanging
        return answer(environ)

    monkeypatch.setattr(front.lane, "answer", slow)
    assert call(front, f"/tasks/{task.id}")[0]["status"] == 200
    monkeypatch.setattr(front.lane, "answer", lambda environ: pytest.fail("read on the loop"))
    assert call(front, f"/tasks/{task.id}")[0]["status"] == 200  # by Flask


@pytest.mark.settings(rate_limit="1000/second")
def test_with_rate_limits_reads_go_to_flask(app, store):
    task = put(store)
    front = asgi.App(app)
    routed = []

    async def answer(scope, body, send) -> None:
        routed.append(scope["path"])

    front.flask.answer = answer
    call(front, f"/tasks/{task.id}")
    assert routed == [f"/tasks/{task.id}"]


def test_a_task_the_fast_lane_cannot_answer_goes_to_flask(app):
    front = asgi.App(app)
    start, *body = call(front, "/tasks/" + "0" * 32)
    assert start["status"] == 404
    assert jsoncodec.loads(b"".join(part["body"] for part in body))["error"]


def test_past_its_backlog_a_worker_answers_503_at_once(app):
    front = asgi.App(app)
    front.backlog = 0
    start, body = call(front, "/healthz")
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    assert jsoncodec.loads(body["body"]) == {"error": "the backend is busy: try again shortly"}


def test_a_body_silent_past_its_limit_fails_the_read():
    scope = body_scope()
    asgi.allow_idle({"asgi.scope": scope}, 0.05)
    first, silent = reads(scope, {"type": "http.request", "body": b"ab", "more_body": True})
    assert first["body"] == b"ab"
    assert isinstance(silent, TimeoutError)


def test_a_client_gone_mid_body_fails_the_read():
    (gone,) = reads(body_scope(), {"type": "http.disconnect"}, count=1)
    assert isinstance(gone, ConnectionResetError)


def test_a_chunked_body_cut_short_is_read_then_fails_its_next_read():
    scope = body_scope((b"transfer-encoding", b"chunked"), **{asgi.CUT_SHORT: True})
    last, after = reads(scope, {"type": "http.request", "body": b"1,2,3\n", "more_body": False})
    assert last["body"] == b"1,2,3\n" and last["more_body"]
    assert isinstance(after, ConnectionResetError)


def test_a_body_with_a_length_cut_short_ends_for_werkzeug_to_count():
    scope = body_scope((b"content-length", b"100"), **{asgi.CUT_SHORT: True})
    (last,) = reads(
        scope, {"type": "http.request", "body": b"1,2,3\n", "more_body": False}, count=1
    )
    assert last == {"type": "http.request", "body": b"1,2,3\n", "more_body": False}


def post(app: asgi.App, body: bytes, content_type: bytes = b"application/json") -> list[dict]:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/tasks",
        "query_string": b"",
        "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_task_is_created_without_flask(app, store):
    front = asgi.App(app)

    async def refuse(scope, body, send) -> None:
        raise AssertionError("Flask answered")

    front.flask.answer = refuse
    start, body = post(front, b'{"storage": "local", "path": "a.csv"}')
    assert start["status"] == 202
    created = jsoncodec.loads(body["body"])
    assert (b"location", f"/tasks/{created['id']}".encode()) in start["headers"]
    assert store.get(created["id"]).status == "queued"


def test_a_post_the_lane_does_not_take_reaches_flask_whole(app):
    front = asgi.App(app)
    start, *body = post(front, b'{"storage": "local", "path": "a.csv"')
    assert start["status"] == 400
    answer = jsoncodec.loads(b"".join(part["body"] for part in body))
    assert answer == {"error": "the request body is not valid JSON"}


def test_after_a_slow_post_decision_posts_go_to_flask_for_a_while(app, store, monkeypatch):
    front = asgi.App(app)
    decide = front.lane.task_to_create

    def slow(environ, body):
        time.sleep(asgi.SLOW_READ * 1.5)  # a client's token looked up in a Redis that hangs
        return decide(environ, body)

    monkeypatch.setattr(front.lane, "task_to_create", slow)
    assert post(front, b'{"storage": "local", "path": "a.csv"}')[0]["status"] == 202
    monkeypatch.setattr(front.lane, "task_to_create", lambda *_: pytest.fail("on the loop"))
    assert post(front, b'{"storage": "local", "path": "a.csv"}')[0]["status"] == 202  # Flask
