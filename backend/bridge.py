"""Flask on a pool of threads, behind the event loop (backend/asgi.py).

Why not a2wsgi, the usual bridge, measured with bench/throughput.py: every message it
passes between the thread and the loop (the status, each piece of the body, its end) makes
the thread wait for the loop, and a POST /tasks cost 1,000 us of the backend's CPU through
it against 780 under gunicorn's gthread; 730 through this one. Here a small JSON body is
read on the loop before the thread is taken, and the answer goes back without the thread
waiting for the loop, as one hand-over for its head and first piece and one for its end.
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable], Iterable[bytes]]

SMALL_BODY = 64 * 1024  # a JSON body up to this size is read whole before Flask's turn
IN_FLIGHT = 16  # pieces of an answer waiting for a slow client before the thread waits too


class Bridge:
    def __init__(self, app: WSGIApp, threads: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="flask")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.answer(scope, await self.body(scope, receive), send)

    async def body(self, scope: Scope, receive: Receive) -> Body:
        """The request's body, with a small JSON one read ahead."""
        body = Body(asyncio.get_running_loop(), receive)
        if _small_json(scope):
            await body.read_ahead()
        return body

    async def answer(self, scope: Scope, body: Body, send: Send) -> None:
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()
        room = _Room()
        answered = loop.run_in_executor(
            self.pool, self._answer, _environ(scope, body), loop, outbox, room
        )
        try:
            while (messages := await outbox.get()) is not None:
                for message in messages:
                    await send(message)
                room.free()
        finally:
            room.close()  # should sending fail, the thread stops answering, not waits
        await answered  # the thread's exception, if it raised one

    def _answer(
        self,
        environ: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        outbox: asyncio.Queue[list[dict[str, Any]] | None],
        room: _Room,
    ) -> None:
        """Runs on a thread of the pool: the app's answer, handed to the loop."""

        def hand_over(messages: list[dict[str, Any]]) -> None:
            room.take()  # a client that reads slowly holds this thread, not memory
            loop.call_soon_threadsafe(outbox.put_nowait, messages)

        pending: list[dict[str, Any]] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            if exc_info is not None and not pending:
                raise exc_info[1].with_traceback(exc_info[2])  # the head went out already
            head = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            pending[:] = [
                {"type": "http.response.start", "status": int(status[:3]), "headers": head}
            ]

        try:
            iterable = self.app(environ, start_response)
            try:
                for chunk in iterable:
                    if chunk:
                        pending.append(
                            {"type": "http.response.body", "body": chunk, "more_body": True}
                        )
                        hand_over(pending)
                        pending = []
            finally:
                if hasattr(iterable, "close"):
                    iterable.close()
            pending.append({"type": "http.response.body", "body": b"", "more_body": False})
            hand_over(pending)
        except _Closed:
            pass  # the answer cannot be sent: the app's iterable was closed, nothing to do
        finally:
            loop.call_soon_threadsafe(outbox.put_nowait, None)


class _Closed(Exception):
    pass


class _Room:
    """Room for IN_FLIGHT pieces of an answer between the thread and the client."""

    def __init__(self) -> None:
        self.slots = threading.Semaphore(IN_FLIGHT)
        self.closed = False

    def take(self) -> None:
        """Wait for room; raise _Closed once the loop has stopped sending."""
        if not self.closed:
            self.slots.acquire()
        if self.closed:
            raise _Closed

    def free(self) -> None:
        self.slots.release()

    def close(self) -> None:
        self.closed = True
        self.slots.release()  # wakes a thread waiting in take()


class Body(io.RawIOBase):
    """The request body as the thread reads it: what the loop read ahead, then each chunk
    as it arrives, fetched from the loop. An error the loop met (the client silent or
    gone, backend/asgi.py) is raised after the bytes that did arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        self.loop = loop
        self.receive = receive
        self.chunk = memoryview(b"")
        self.more = True
        self.error: OSError | None = None

    async def read_ahead(self) -> None:
        data = bytearray()
        try:
            while self.more:
                message = await self.receive()
                data += message.get("body", b"")
                self.more = message.get("more_body", False)
        except OSError as error:
            self.more, self.error = False, error
        self.chunk = memoryview(bytes(data))

    def whole(self) -> bytes | None:
        """The whole body, if it was read ahead without a fault and nothing is read yet."""
        return None if self.more or self.error is not None else self.chunk.tobytes()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.chunk and self.more:
            try:
                message = asyncio.run_coroutine_threadsafe(self.receive(), self.loop).result()
            except OSError as error:
                self.more, self.error = False, error
                break
            self.chunk = memoryview(message.get("body", b""))
            self.more = message.get("more_body", False)
        if not self.chunk and self.error is not None:
            raise self.error
        size = min(len(buffer), len(self.chunk))
        buffer[:size] = self.chunk[:size]
        self.chunk = self.chunk[size:]
        return size


def _small_json(scope: Scope) -> bool:
    length = kind = b""
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"content-type":
            kind = value
    return kind.startswith(b"application/json") and length.isdigit() and int(length) <= SMALL_BODY


def _environ(scope: Scope, body: Body) -> dict[str, Any]:
    """The WSGI environ (PEP 3333) of an ASGI request."""
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.input_terminated": True,  # else werkzeug reads a chunked body as empty
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "asgi.scope": scope,
    }
    if client := scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            key = "HTTP_" + key
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ
