"""`python -m backend`: serve the API with gunicorn on $HOST:$PORT, each worker an event
loop in front of the Flask app (backend/server.py says why, backend/asgi.py how).

Why not granian: it served this app at 7,500 rps with a p99 of 10 ms on bench/api.py's
load (a measure from before these workers, which do 13,000 at 10 ms), and has no timeout on
a request body: a client that sends its headers and then nothing holds a Python thread for
good, and four such connections stopped a granian of two threads for over 70 s. Here a
body is read on the event loop, which bounds its silence (backend/asgi.py)."""

import os
import shutil
import tempfile

# prometheus-client's multiprocess mode: each gunicorn worker writes its counters to this
# directory and /metrics adds them up. It must be set before prometheus_client is imported;
# a fresh directory per start, so that counts begin at 0.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="colsum-metrics-")

from typing import Any

from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess

from backend import asgi, auth, create_app, server
from colsum import logs
from colsum.settings import Settings


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
        # Flask runs on WEB_THREADS threads a worker (backend/bridge.py), so that a long poll
        # (GET /tasks/<id>?wait=N, blocked on Redis pub/sub) holds a thread, not a whole
        # worker; each thread has its own pika connection. Long polls never hold the last
        # two (backend/tasks.py).
        self.cfg.set("worker_class", server.Worker)
        # gunicorn's control socket has one path per user: two backends on a machine
        # (a test run beside `make run`) would fight over it, and nothing here uses it.
        self.cfg.set("control_socket_disable", True)
        self.cfg.set("accesslog", "-" if self.settings.access_log else None)
        self.cfg.set("child_exit", _forget_worker)
        self.cfg.set("loglevel", self.settings.log_level.lower())

    def load(self) -> Any:
        return asgi.App(create_app(self.settings))


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
