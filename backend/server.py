"""How gunicorn serves the backend: its master forks workers that each run uvicorn's event
loop (uvloop, and httptools to parse HTTP) with backend/asgi.py's app.

Why not gunicorn's own gthread worker, measured with bench/api.py's load on 2 cores: it
parses HTTP in Python and hands every request to a thread, 6,000-7,800 rps for
GET /tasks/<id> at a p99 of 13-17 ms (and 24-34 ms on a busier day); this worker, 13,000
to 14,000 at 5-10 ms. uvicorn puts no bound on a request's head, though: `Protocol` does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from backend import asgi
from colsum import jsoncodec

# Seconds from a request's first byte (or from the connection's opening) to the end of its
# head: a client that sends its request line or headers slower than that is hung up on.
HEAD_DEADLINE = 10.0
# Bytes a request's line and headers may take (gunicorn's own limits came to about 800 KiB;
# nothing this API takes needs more than a few KiB): httptools and uvicorn keep whatever
# comes until the head ends.
HEAD_LIMIT = 64 * 1024
HEAD_TOO_LARGE = f"the request's line and headers are larger than {HEAD_LIMIT // 1024} KiB"


class Protocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline and a size limit on each request's
    head, and a request that is not HTTP answered in JSON, naming the fault, as every other
    error is. Without them, connections that send half a head (slowloris) stay open for
    good, and one endless header takes all the memory there is."""

    _deadline: asyncio.TimerHandle | None = None
    _head_bytes = 0  # of the request line and headers parsed so far
    _head_read = 0  # bytes read while the head is not yet whole

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            # RFC 9110, 15.6.2: a method the server does not know is 501, not 400 or 405
            self._refuse(b"501 Not Implemented", "the request's method is not one HTTP knows")
            return
        except httptools.HttpParserError as error:
            if max(self._head_bytes, self._head_read) > HEAD_LIMIT:
                self._refuse(b"431 Request Header Fields Too Large", HEAD_TOO_LARGE)
            elif self.cycle is not None and self.cycle.more_body:  # in a chunked body
                self.send_400_response(f"the request's chunked encoding is broken: {error}")
            else:
                self.send_400_response(f"the request is not valid HTTP: {error}")
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no WebSockets here: a plain request
        if self._deadline is not None:  # a head goes on past `data` (which may end a body)
            self._head_read += len(data)  # httptools keeps a header's pieces until its end
            if self._head_read > HEAD_LIMIT:
                self._refuse(b"431 Request Header Fields Too Large", HEAD_TOO_LARGE)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def eof_received(self) -> bool | None:
        """A client may close its sending side and still wait for the answer: the
        connection stays open for it, and a body that had not ended is cut short
        (backend/asgi.py) rather than read as whole."""
        if self.cycle is None or self.cycle.response_complete:
            return None  # nothing left to answer: close
        if self.cycle.more_body:
            self.cycle.scope[asgi.CUT_SHORT] = True
            self.cycle.more_body = False
            self.cycle.message_event.set()
        return True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._refuse(b"400 Bad Request", msg)

    def _refuse(self, status: bytes, message: str) -> None:
        body = jsoncodec.encode({"error": message})
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(body), body)
        )
        self.transport.close()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > HEAD_LIMIT:
            raise ValueError("head too large")  # ends the parse: data_received answers 431

    def _arm(self) -> None:
        self._head_bytes = self._head_read = 0
        self._deadline = self.loop.call_later(HEAD_DEADLINE, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        self.transport.close()


def _closed_already(record: logging.LogRecord) -> bool:
    """False for gunicorn's "Error while closing socket [Errno 9]" at every stop: uvloop
    closed the listening socket already (gunicorn#1877). Harmless, it reads as a failure."""
    return not (record.msg == "Error while closing socket %s" and "[Errno 9]" in str(record.args))


class Worker(UvicornWorker):
    """uvicorn's worker for gunicorn; its access log is gunicorn's (ACCESS_LOG). The
    client's address is the peer's, as under gthread: X-Forwarded-For is not believed."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": Protocol,
        "lifespan": "off",
        "ws": "none",
        "proxy_headers": False,
        "server_header": False,  # the software and its version are nobody's business
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_notify = 1.0  # callback_notify each second, as gthread's loop
        self.log.error_log.addFilter(_closed_already)

    async def callback_notify(self) -> None:
        """gunicorn's own workers leave once their master is gone (killed, say); uvicorn's
        would serve on for good, holding the port the next start needs."""
        if os.getppid() != self.ppid:
            self.log.info("Parent changed, shutting down: %s", self)
            os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's own graceful stop
        self.notify()
