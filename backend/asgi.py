"""The backend as gunicorn's workers serve it: an ASGI app on uvicorn's event loop (see
backend/server.py), in front of the Flask app.

- The two hottest reads (backend/fastlane.py) are answered on the event loop itself: no
  thread, no WSGI environ, no Flask. So is a plain `POST /tasks` decided, then recorded on
  a thread without Flask (it may wait for RabbitMQ).
- Everything else goes to Flask on a pool of WEB_THREADS threads (backend/bridge.py), as
  gunicorn's gthread worker ran it before.
- A request body is read on the event loop, so its silence can be bounded there: a client
  that stops sending for CLIENT_IDLE seconds (UPLOAD_IDLE_TIMEOUT for an upload) gets a
  TimeoutError in the thread that reads, and one that goes away a ConnectionResetError,
  never a quiet end of the body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask

from backend.bridge import Body, Bridge
from colsum import jsoncodec
from colsum.task import Task

if TYPE_CHECKING:  # backend.fastlane imports the views, which import allow_idle from here
    from backend.fastlane import FastLane

# Seconds a client may stay silent in the middle of a request's body before the read fails.
CLIENT_IDLE = 10.0
IDLE_KEY = "colsum.idle"  # in the ASGI scope: this request's own limit, if a view set one
CUT_SHORT = "colsum.cut_short"  # in the ASGI scope: the client closed before the body's end
# Requests a worker holds for Flask at once (each may hold a 64 KiB body read ahead); more
# are answered 503 at once, as gthread's worker_connections bounded them.
BACKLOG = 1000
BUSY = jsoncodec.encode({"error": "the backend is busy: try again shortly"})
# A fast-lane read slower than this (Redis hung, not down) stalled every request of the
# worker meanwhile: reads then go through Flask's threads for LANE_PAUSE seconds. And one
# gives up after LANE_TIMEOUT, not after the pool's 10 s.
SLOW_READ = 0.1
LANE_PAUSE = 10.0
LANE_TIMEOUT = 1.0

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class App:
    def __init__(self, flask_app: Flask) -> None:
        self.lane: FastLane = flask_app.wsgi_app  # create_app puts the fast lane first
        threads = flask_app.extensions["colsum"].settings.web_threads
        self.flask = Bridge(self.lane.inner, threads)
        self.backlog = BACKLOG
        self.held = 0
        self.lane_paused_until = 0.0
        self.lane.found.store.hurry(LANE_TIMEOUT)  # built on the thread that runs the loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan events (uvicorn is told so) and no WebSockets here
        if scope["method"] == "GET" and (body := self._fast_answer(scope)):
            await send({"type": "http.response.start", "status": 200, "headers": _head(body)})
            await send({"type": "http.response.body", "body": body})
            return
        if self.held >= self.backlog:
            head = [*_head(BUSY), (b"retry-after", b"1")]
            await send({"type": "http.response.start", "status": 503, "headers": head})
            await send({"type": "http.response.body", "body": BUSY})
            return
        self.held += 1
        try:
            body = await self.flask.body(scope, _bounded(scope, receive))
            if scope["method"] == "POST" and (task := self._task_to_create(scope, body)):
                await self._create(task, send)
            else:
                await self.flask.answer(scope, body, send)
        finally:
            self.held -= 1

    def _fast_answer(self, scope: Scope) -> bytes | None:
        return self._on_loop(lambda: self.lane.answer(_environ(scope)))

    def _task_to_create(self, scope: Scope, body: Body) -> Task | None:
        return self._on_loop(lambda: self.lane.task_to_create(_environ(scope), body.whole()))

    def _on_loop(self, read: Callable[[], T | None]) -> T | None:
        """What the fast lane reads (a task, a client's token) read on the loop itself: a
        Redis round trip is far cheaper than a hand-over to a thread, unless Redis hangs."""
        started = time.monotonic()
        if started < self.lane_paused_until:
            return None
        found = read()
        if time.monotonic() - started > SLOW_READ:
            self.lane_paused_until = time.monotonic() + LANE_PAUSE
        return found

    async def _create(self, task: Task, send: Send) -> None:
        """The fast lane's POST: on a thread, as it may wait for RabbitMQ's confirm."""
        loop = asyncio.get_running_loop()
        status, headers, body = await loop.run_in_executor(self.flask.pool, self.lane.create, task)
        head = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})


def allow_idle(environ: dict[str, Any], seconds: float) -> None:
    """Let this request's body stay silent for `seconds` at a time (an upload may wait on
    a slow disk at the client's end); a no-op under a server that is not this one."""
    if (scope := environ.get("asgi.scope")) is not None:
        scope[IDLE_KEY] = seconds


def _bounded(scope: Scope, receive: Receive) -> Receive:
    """`receive` that fails instead of waiting for good, or of ending a body cut short."""
    cut = False

    async def bounded() -> dict[str, Any]:
        nonlocal cut
        if cut:
            raise ConnectionResetError("the client closed its side before the body's end")
        try:
            message = await asyncio.wait_for(receive(), scope.get(IDLE_KEY, CLIENT_IDLE))
        except TimeoutError:
            raise TimeoutError("the client sent nothing more") from None
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("the client went away")
        if scope.get(CUT_SHORT) and not message.get("more_body") and _chunked(scope):
            # werkzeug finds a body shorter than its Content-Length; a chunked one would
            # read as whole, so its next read fails instead
            cut = True
            return {**message, "more_body": True}
        return message

    return bounded


def _chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


def _environ(scope: Scope) -> dict[str, str]:
    """The few WSGI keys the fast lane reads."""
    environ = {
        "REQUEST_METHOD": scope["method"],
        "PATH_INFO": scope["path"],
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
    }
    for name, value in scope["headers"]:
        if name == b"authorization":
            environ["HTTP_AUTHORIZATION"] = value.decode("latin-1")
        elif name == b"content-length":
            environ["CONTENT_LENGTH"] = value.decode("latin-1")
        elif name == b"content-type":
            environ["CONTENT_TYPE"] = value.decode("latin-1")
        elif name == b"transfer-encoding":
            environ["HTTP_TRANSFER_ENCODING"] = value.decode("latin-1")
    return environ


def _head(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
