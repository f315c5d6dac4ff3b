"""Webhooks: the final record POSTed to a task's callback_url, retried when it fails, and
never to an internal host, nor waiting on a receiver for ever."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from colsum.task import LocalSource, Task
from tests.conftest import HEADER, ROW, free_port, slow_source, wait_for
from tests.e2e.client import finished, local, submit, task

pytestmark = pytest.mark.e2e

# The receivers below listen on loopback, which a deployment refuses by default.
LOOPBACK_ALLOWED = {"WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}


class Receiver:
    """An HTTP server that answers 500 to the first `failures` POSTs, then `status`."""

    def __init__(self, failures: int, status: int = 204, host: str = "127.0.0.1") -> None:
        self.failures = failures
        self.status = status
        self.bodies: list[dict] = []
        self.requests: list[tuple[http.client.HTTPMessage, bytes]] = []  # headers, raw body
        self.location: str | None = None  # sent with a 3xx
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.headers, raw))
                receiver.bodies.append(json.loads(raw))
                failing = len(receiver.bodies) <= receiver.failures
                self.send_response(500 if failing else receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/done"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(failures=2)
    yield receiver
    receiver.server.shutdown()


def test_a_webhook_that_fails_twice_is_delivered_on_the_third_try(settings, services, receiver):
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)
    api = services.backend(**LOOPBACK_ALLOWED)
    services.executor(WEBHOOK_BACKOFF="0.2", **LOOPBACK_ALLOWED)
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
    api = services.backend(**LOOPBACK_ALLOWED)
    services.executor(WEBHOOK_BACKOFF="5", **LOOPBACK_ALLOWED)  # the second try is seconds away
    first = submit(api, {**local("a.csv"), "callback_url": receiver.url})
    wait_for(lambda: receiver.bodies)
    started = time.monotonic()
    assert finished(api, submit(api, local("a.csv")))["status"] == "done"
    assert time.monotonic() - started < 2
    assert task(api, first)["webhook"]["status"] == "pending"


def test_a_cancelled_task_is_delivered_too(settings, services, receiver):
    slow = slow_source(release=threading.Event())
    receiver.failures = 0
    api = services.backend(**LOOPBACK_ALLOWED)
    services.executor(**slow.env, **LOOPBACK_ALLOWED)
    task_id = submit(api, {**slow.source("hung.csv"), "callback_url": receiver.url})
    wait_for(lambda: task(api, task_id)["status"] == "running")
    requests.delete(f"{api}/tasks/{task_id}", timeout=10)
    wait_for(lambda: receiver.bodies)
    assert receiver.bodies[0]["status"] == "cancelled"


# The tests below create their tasks in the store, as the backend would, so that the
# executor alone decides about the URL (the backend may refuse some at submit time).


@pytest.fixture
def hooked(settings, store, publisher) -> Callable[[str], str]:
    """Submit a small task whose final record goes to `url`; returns its id."""
    (settings.data_dir / "a.csv").write_text(HEADER + ROW)

    def hooked(url: str) -> str:
        new = Task(source=LocalSource(path="a.csv"), callback_url=url)
        store.create(new)
        publisher.publish(new.id)
        store.published(new.id)
        return new.id

    return hooked


def settled(store, task_id: str) -> dict | None:
    """The task's `webhook` once delivered or failed for good."""
    webhook = store.get(task_id).to_json()["webhook"]
    return webhook if webhook and webhook["status"] in ("delivered", "failed") else None


def test_a_loopback_receiver_is_refused_by_default_and_gets_nothing(
    services, store, hooked, receiver
):
    services.executor()
    task_id = hooked(receiver.url)
    assert wait_for(lambda: settled(store, task_id)) == {
        "status": "failed",
        "attempts": 1,
        "last_error": "refused: callback_url resolves to 127.0.0.1, a loopback address; "
        "set WEBHOOK_ALLOW_PRIVATE=true or WEBHOOK_ALLOWED_HOSTS to allow it",
    }
    assert receiver.bodies == []


def test_a_host_name_of_a_private_address_is_refused_when_delivering(services, store, hooked):
    # Made in the store, as POST /tasks would refuse this name before an executor sees it.
    receiver = Receiver(failures=0)
    services.executor()
    task_id = hooked(f"http://localhost:{receiver.server.server_port}/done")
    webhook = wait_for(lambda: settled(store, task_id))
    receiver.server.shutdown()
    assert webhook["status"] == "failed"
    loopback = r"refused: callback_url resolves to (127\.0\.0\.1|::1), a loopback address"
    assert re.match(loopback, webhook["last_error"])
    assert receiver.bodies == []


def test_the_refusal_names_the_address_not_whether_a_port_is_open(services, store, hooked):
    services.executor()
    closed = hooked(f"http://10.0.0.5:{free_port()}/")
    assert wait_for(lambda: settled(store, closed))["last_error"] == (
        "refused: callback_url resolves to 10.0.0.5, a private address; "
        "set WEBHOOK_ALLOW_PRIVATE=true or WEBHOOK_ALLOWED_HOSTS to allow it"
    )


def test_webhook_allow_private_lets_a_loopback_receiver_have_it(services, store, hooked, receiver):
    receiver.failures = 0
    services.executor(WEBHOOK_ALLOW_PRIVATE="true")
    task_id = hooked(receiver.url)
    assert wait_for(lambda: settled(store, task_id))["status"] == "delivered"
    assert receiver.bodies[0]["id"] == task_id


def test_a_redirect_is_not_followed(services, store, hooked):
    target = Receiver(failures=0)
    redirecting = Receiver(failures=0, status=302)
    redirecting.location = target.url
    services.executor(WEBHOOK_ATTEMPTS="1", **LOOPBACK_ALLOWED)
    task_id = hooked(redirecting.url)
    assert wait_for(lambda: settled(store, task_id)) == {
        "status": "failed",
        "attempts": 1,
        "last_error": "the receiver answered 302; redirects are not followed",
    }
    assert len(redirecting.bodies) == 1
    assert target.bodies == []


def test_the_signature_verifies_with_the_secret(services, store, hooked, receiver):
    receiver.failures = 0
    services.executor(WEBHOOK_SECRET="s3cret", **LOOPBACK_ALLOWED)
    task_id = hooked(receiver.url)
    assert wait_for(lambda: settled(store, task_id))["status"] == "delivered"
    headers, body = receiver.requests[0]
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Colsum-Signature"] == f"sha256={expected}"


def test_without_a_secret_no_signature_is_sent(services, store, hooked, receiver):
    receiver.failures = 0
    services.executor(**LOOPBACK_ALLOWED)
    task_id = hooked(receiver.url)
    assert wait_for(lambda: settled(store, task_id))["status"] == "delivered"
    assert "X-Colsum-Signature" not in receiver.requests[0][0]


class RawReceiver:
    """A TCP server that reads each request's first bytes, then leaves the connection to
    `answer`: for receivers no HTTP server library would imitate."""

    def __init__(self, answer: Callable[[socket.socket, threading.Event], None]) -> None:
        self.answer = answer
        self.stopped = threading.Event()
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.server.accept()
                self.connections += 1
                threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.recv(65536)
            self.answer(connection, self.stopped)

    def close(self) -> None:
        self.stopped.set()
        self.server.close()


@pytest.fixture
def raw_receiver() -> Iterator[Callable[..., RawReceiver]]:
    made: list[RawReceiver] = []

    def make(answer) -> RawReceiver:
        made.append(RawReceiver(answer))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def trickle(connection: socket.socket, stopped: threading.Event) -> None:
    """A status line that never ends, a byte at a time: each read returns in time."""
    connection.sendall(b"HTTP/1.1 200 OK")
    while not stopped.wait(0.1):
        connection.sendall(b"K")


def test_a_trickling_receiver_is_cut_at_the_deadline_and_the_next_webhook_goes_out(
    services, store, hooked, receiver, raw_receiver
):
    receiver.failures = 0
    slow = raw_receiver(trickle)
    services.executor(WEBHOOK_TIMEOUT="1", WEBHOOK_ATTEMPTS="1", **LOOPBACK_ALLOWED)
    stuck = hooked(slow.url)
    wait_for(lambda: slow.connections)
    following = hooked(receiver.url)
    assert wait_for(lambda: settled(store, stuck), timeout=20) == {
        "status": "failed",
        "attempts": 1,
        "last_error": "the receiver did not answer within 1 s",
    }
    assert wait_for(lambda: settled(store, following))["status"] == "delivered"


def test_a_receiver_holding_a_delivery_delays_no_other_delivery(
    services, store, hooked, receiver, raw_receiver
):
    receiver.failures = 0
    slow = raw_receiver(trickle)
    services.executor(WEBHOOK_TIMEOUT="60", **LOOPBACK_ALLOWED)
    stuck = hooked(slow.url)
    wait_for(lambda: slow.connections)
    following = hooked(receiver.url)
    assert wait_for(lambda: settled(store, following))["status"] == "delivered"
    assert store.get(stuck).webhook_status == "pending"


def test_a_receiver_that_accepts_and_never_answers_is_cut_at_the_deadline(
    services, store, hooked, raw_receiver
):
    silent = raw_receiver(lambda connection, stopped: stopped.wait(60))
    services.executor(WEBHOOK_TIMEOUT="1", WEBHOOK_ATTEMPTS="1", **LOOPBACK_ALLOWED)
    task_id = hooked(silent.url)
    webhook = wait_for(lambda: settled(store, task_id), timeout=20)
    assert webhook["last_error"] == "the receiver did not answer within 1 s"


def endless_body(connection: socket.socket, stopped: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
    chunk = b"x" * 65536
    while not stopped.is_set():
        connection.sendall(chunk)


def test_a_huge_answer_is_not_read_whole(services, store, hooked, raw_receiver):
    huge = raw_receiver(endless_body)
    services.executor(WEBHOOK_ATTEMPTS="1", **LOOPBACK_ALLOWED)
    task_id = hooked(huge.url)
    assert wait_for(lambda: settled(store, task_id), timeout=20)["status"] == "delivered"


def garbage(connection: socket.socket, stopped: threading.Event) -> None:
    connection.sendall(b"SPAM SPAM SPAM\r\n\r\n")


def test_an_answer_that_is_not_http_fails_the_attempt_and_the_next_webhook_goes_out(
    services, store, hooked, receiver, raw_receiver
):
    receiver.failures = 0
    nonsense = raw_receiver(garbage)
    services.executor(WEBHOOK_ATTEMPTS="1", **LOOPBACK_ALLOWED)
    bad, good = hooked(nonsense.url), hooked(receiver.url)
    assert wait_for(lambda: settled(store, bad))["last_error"] == (
        "the receiver's answer is not HTTP"
    )
    assert wait_for(lambda: settled(store, good))["status"] == "delivered"


def test_a_receiver_that_hangs_up_fails_the_attempt(services, store, hooked, raw_receiver):
    hanging_up = raw_receiver(lambda connection, stopped: None)
    services.executor(WEBHOOK_ATTEMPTS="1", **LOOPBACK_ALLOWED)
    task_id = hooked(hanging_up.url)
    assert wait_for(lambda: settled(store, task_id))["last_error"] == (
        "the receiver closed the connection without answering"
    )


def test_a_url_that_cannot_be_parsed_fails_at_once_instead_of_for_ever(services, store, hooked):
    services.executor(WEBHOOK_BACKOFF="0.1", **LOOPBACK_ALLOWED)
    task_id = hooked("http://[::1/done")
    webhook = wait_for(lambda: settled(store, task_id))
    assert (webhook["status"], webhook["attempts"]) == ("failed", 1)
    assert webhook["last_error"].startswith("refused: callback_url is not a valid URL")


def test_a_delivery_whose_record_expired_is_dropped_instead_of_claimed_for_ever(
    services, store, hooked, receiver
):
    receiver.failures = 0
    store.redis.zadd(store.keys.webhooks, {"expired-task": 0})
    services.executor(**LOOPBACK_ALLOWED)
    wait_for(lambda: store.redis.zscore(store.keys.webhooks, "expired-task") is None)
    assert store.redis.exists(store.keys.task("expired-task")) == 0
    task_id = hooked(receiver.url)
    assert wait_for(lambda: settled(store, task_id))["status"] == "delivered"


def test_a_record_that_cannot_be_read_fails_its_delivery_and_the_next_goes_out(
    services, store, hooked, receiver
):
    receiver.failures = 0
    broken = store.keys.task("broken")
    store.redis.hset(broken, mapping={"id": "broken", "status": "done", "callback_url": "x"})
    store.redis.zadd(store.keys.webhooks, {"broken": 0})
    services.executor(**LOOPBACK_ALLOWED)
    wait_for(lambda: store.redis.zscore(store.keys.webhooks, "broken") is None)
    assert store.redis.hget(broken, "webhook_status") == "failed"
    assert store.redis.hget(broken, "webhook_error").startswith("internal error: ")
    task_id = hooked(receiver.url)
    assert wait_for(lambda: settled(store, task_id))["status"] == "delivered"
