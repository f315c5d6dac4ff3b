"""Webhooks: the final record POSTed to a task's callback_url, retried when it fails."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import HEADER, ROW, free_port, slow_file, wait_for
from tests.e2e.client import finished, local, submit, task

pytestmark = pytest.mark.e2e


class Receiver:
    """An HTTP server that answers 500 to the first `failures` POSTs, then 204."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.bodies.append(body)
                failing = len(receiver.bodies) <= receiver.failures
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/done"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(failures=2)
    yield receiver
    receiver.server.shutdown()


def test_a_webhook_that_fails_twice_is_delivered_on_the_third_try(settings, services, receiver):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    api = services.backend()
    services.executor(WEBHOOK_BACKOFF="0.2")
    task_id = submit(api, {**local("a.csv"), "callback_url": receiver.url})
    wait_for(lambda: (task(api, task_id)["webhook"] or {}).get("status") == "delivered", 20)
    record = task(api, task_id)
    assert record["webhook"] == {
        "status": "delivered",
        "attempts": 3,
        "last_error": ("the receiver answered 500"),
    }
    assert [body["status"] for body in receiver.bodies] == ["done"] * 3
    assert receiver.bodies[-1]["result"] == record["result"]


def test_retrying_a_webhook_does_not_delay_the_next_task(settings, services, receiver):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    api = services.backend()
    services.executor(WEBHOOK_BACKOFF="5")  # the second try is seconds away
    first = submit(api, {**local("a.csv"), "callback_url": receiver.url})
    wait_for(lambda: receiver.bodies)
    started = time.monotonic()
    assert finished(api, submit(api, local("a.csv")))["status"] == "done"
    assert time.monotonic() - started < 2
    assert task(api, first)["webhook"]["status"] == "pending"


def test_a_cancelled_task_is_delivered_too(settings, services, receiver):
    slow_file(settings.data_dir / "hung.csv", release=threading.Event())
    receiver.failures = 0
    api = services.backend()
    services.executor()
    task_id = submit(api, {**local("hung.csv"), "callback_url": receiver.url})
    wait_for(lambda: task(api, task_id)["status"] == "running")
    requests.delete(f"{api}/tasks/{task_id}", timeout=10)
    wait_for(lambda: receiver.bodies)
    assert receiver.bodies[0]["status"] == "cancelled"
