"""Flask's threads behind the event loop (backend/bridge.py), with a WSGI app of the test's
own: what the app reads is the body sent, what it answers is what the client gets, and no
thread is left waiting on a client that went away."""

from __future__ import annotations

import asyncio
import threading

import pytest

from backend.bridge import IN_FLIGHT, Bridge


def scope(*headers: tuple[bytes, bytes], method: str = "POST") -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": "/echo",
        "query_string": b"a=1",
        "headers": list(headers),
        "client": ("127.0.0.1", 5000),
    }


def serve(app, request: dict, *chunks: bytes, send=None) -> list[dict]:
    """The messages `app` sends for `request`, its body sent in `chunks`."""
    pieces = list(chunks)
    sent: list[dict] = []

    async def receive() -> dict:
        body = pieces.pop(0) if pieces else b""
        return {"type": "http.request", "body": body, "more_body": bool(pieces)}

    async def record(message: dict) -> None:
        sent.append(message)

    asyncio.run(Bridge(app, threads=2)(request, receive, send or record))
    return sent


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Path", environ["PATH_INFO"])])
    return [environ["QUERY_STRING"].encode(), b" ", body]


def body_of(sent: list[dict]) -> bytes:
    return b"".join(message.get("body", b"") for message in sent[1:])


def test_the_app_reads_the_body_sent_in_pieces_and_its_answer_arrives_whole():
    sent = serve(echo, scope((b"content-type", b"text/csv")), b"1,2\n", b"3,4\n")
    assert sent[0]["status"] == 200
    assert (b"x-path", b"/echo") in sent[0]["headers"]
    assert body_of(sent) == b"a=1 1,2\n3,4\n"
    assert sent[-1]["more_body"] is False


def test_a_small_json_body_is_read_before_the_app_runs():
    headers = ((b"content-type", b"application/json"), (b"content-length", b"8"))
    sent = serve(echo, scope(*headers), b'{"a":', b" 1}")
    assert body_of(sent) == b'a=1 {"a": 1}'


def test_a_body_whose_client_went_away_fails_the_read_after_what_arrived():
    read: list[bytes] = []

    def reader(environ, start_response):
        stream = environ["wsgi.input"]
        read.append(stream.read(100))
        with pytest.raises(ConnectionResetError):
            stream.read(100)
        start_response("400 Bad Request", [])
        return [b"cut"]

    calls = 0

    async def receive() -> dict:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"1,2\n", "more_body": True}
        raise ConnectionResetError("gone")

    async def ignore(message: dict) -> None:
        pass

    asyncio.run(Bridge(reader, threads=1)(scope(), receive, ignore))
    assert read == [b"1,2\n"]


def test_a_long_answer_to_a_client_that_cannot_take_it_leaves_no_thread_waiting():
    finished = threading.Event()

    def endless(environ, start_response):
        start_response("200 OK", [])
        try:
            for _ in range(IN_FLIGHT * 4):
                yield b"x"
        finally:
            finished.set()

    async def broken(message: dict) -> None:
        raise OSError("the connection broke")

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def answer_then_wait() -> bool:
        with pytest.raises(OSError, match="broke"):
            await Bridge(endless, threads=1)(scope(method="GET"), receive, broken)
        for _ in range(100):  # the loop runs on, as a server's does
            if finished.is_set():
                return True
            await asyncio.sleep(0.05)
        return False

    assert asyncio.run(answer_then_wait())


def test_an_error_the_app_raises_reaches_the_server():
    def failing(environ, start_response):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        serve(failing, scope(method="GET"))
