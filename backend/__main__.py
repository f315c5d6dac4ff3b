"""`python -m backend`: serve the API with gunicorn on $HOST:$PORT.

Why gunicorn, measured: granian 2.8 serves this app at twice gunicorn's rate with a third
of its p99 (bench/api.py's load, 7,500 against 3,800 rps, 10 ms against 28), but it has no
timeout on a request body: a client that sends its headers and then nothing holds a Python
thread for good, and four such connections stopped a granian of two threads for over 70 s.
Here a client silent for CLIENT_IDLE seconds is dropped (`Worker`)."""

import os
import shutil
import tempfile

# prometheus-client's multiprocess mode: each gunicorn worker writes its counters to this
# directory and /metrics adds them up. It must be set before prometheus_client is imported;
# a fresh directory per start, so that counts begin at 0.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="colsum-metrics-")

import socket
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker
from prometheus_client import multiprocess

from backend import auth, create_app
from colsum import logs
from colsum.settings import Settings

# Seconds a client may stay silent in the middle of a request before the backend hangs up.
CLIENT_IDLE = 10.0


class IdleLimitedSocket(socket.socket):
    """A client connection on which a blocking read gives up after CLIENT_IDLE seconds of
    silence (or the timeout a view set, as uploads do), as if the client had gone:
    gunicorn drops a request it was still reading quietly, and a view reading the body
    finds the TimeoutError behind werkzeug's ClientDisconnected."""

    def setblocking(self, flag: bool) -> None:
        self.settimeout(CLIENT_IDLE if flag else 0.0)

    def recv(self, size: int, flags: int = 0) -> bytes:
        try:
            return super().recv(size, flags)
        except TimeoutError as error:
            raise NoMoreData() from error


class Worker(ThreadWorker):
    """gunicorn's gthread worker, but a client that stops sending halfway through its
    request line, headers or body loses its thread after CLIENT_IDLE seconds: gthread
    reads a request with blocking reads and no timeout, so a few half-sent requests per
    thread (slowloris) would hold every thread, /healthz's too, for as long as they like."""

    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, IdleLimitedSocket):  # a new connection, not kept alive
            conn.sock = IdleLimitedSocket(fileno=conn.sock.detach())
        super().enqueue_req(conn)


def _forget_worker(_server: Any, worker: Any) -> None:
    """A worker that exits leaves its live gauges behind unless told so."""
    multiprocess.mark_process_dead(worker.pid)


class Server(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        self.cfg.set("bind", f"{self.settings.host}:{self.settings.port}")
        self.cfg.set("workers", self.settings.web_workers)
        # Threads, so that a long poll (GET /tasks/<id>?wait=N, blocked on Redis pub/sub)
        # holds a thread, not a whole worker; each thread has its own pika connection.
        # Long polls never hold the last two (backend/tasks.py).
        self.cfg.set("worker_class", Worker)
        self.cfg.set("threads", self.settings.web_threads)
        # gunicorn's control socket has one path per user: two backends on a machine
        # (a test run beside `make run`) would fight over it, and nothing here uses it.
        self.cfg.set("control_socket_disable", True)
        self.cfg.set("accesslog", "-" if self.settings.access_log else None)
        self.cfg.set("child_exit", _forget_worker)
        self.cfg.set("loglevel", self.settings.log_level.lower())

    def load(self) -> Any:
        return create_app(self.settings)


def main() -> None:
    master = os.getpid()
    settings = Settings.from_env()
    logs.configure(settings)
    auth.announce(settings)
    try:
        Server(settings).run()
    finally:
        # Workers are forked from here and leave through this `finally` too: only the
        # master, last out, may remove the folder they write their counters to.
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        own = os.path.basename(metrics_dir).startswith("colsum-metrics-")
        if own and os.getpid() == master:  # made above, not one the user chose
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
