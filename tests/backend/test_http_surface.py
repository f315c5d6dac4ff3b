"""What a hostile or careless client can send a real backend (gunicorn, gthread), byte for
byte: every answer is a JSON error or a success, never a 500, never a hang."""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack

import pytest
import requests

# backend.__main__.CLIENT_IDLE; not imported, as importing it sets up this process's metrics.
CLIENT_IDLE = 10
LOCAL = {"storage": "local", "path": "sample.csv"}
UNKNOWN = "0" * 32
ROUTES = [
    "/tasks",
    f"/tasks/{UNKNOWN}",
    "/tasks/active",
    "/executors",
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
    "/dashboard/live",
    "/openapi.yaml",
    "/docs/",
]


@pytest.fixture
def backend(services) -> str:
    return services.backend(WEB_CONCURRENCY="1")


@pytest.mark.slow
def test_a_stalled_json_body_is_answered_400_not_held(backend, services):
    stalled = (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\nConnection: close\r\n\r\n{"storage": '
    )
    status, body = exchange(backend, stalled, timeout=CLIENT_IDLE + 5)  # after CLIENT_IDLE
    assert status == 400
    assert json.loads(body) == {"error": "the request body did not arrive whole"}
    assert "Traceback" not in services.started[0].log


def exchange(url: str, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send raw bytes, read the whole answer: its status and body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def chunked_post(body: bytes) -> bytes:
    pieces = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n"
    )


def test_a_chunked_json_body_over_64_kib_is_413(backend):
    status, body = exchange(
        backend, chunked_post(json.dumps({**LOCAL, "x": "y" * 70_000}).encode())
    )
    assert status == 413
    assert json.loads(body) == {"error": "the request body is larger than 64 KiB"}


def test_a_chunked_json_body_within_the_limit_is_a_task(backend):
    status, body = exchange(backend, chunked_post(json.dumps(LOCAL).encode()))
    assert status == 202
    assert json.loads(body)["status"] == "queued"


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_head_and_options_answer_on_every_route(backend, method):
    for route in ROUTES:
        response = requests.request(method, f"{backend}{route}", timeout=10)
        expected = 404 if route == f"/tasks/{UNKNOWN}" and method == "HEAD" else 200
        assert response.status_code == expected, (method, route)


@pytest.mark.slow
def test_half_sent_requests_lose_their_threads_and_never_block_the_backend(backend, services):
    """More connections than the worker has threads, each stopping mid-headers."""
    port = int(backend.rsplit(":", 1)[1])
    with ExitStack() as stack:
        for _ in range(12):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        time.sleep(1)
        response = requests.get(f"{backend}/healthz", timeout=CLIENT_IDLE + 10)
        assert response.json() == {"status": "ok"}
    assert "Traceback" not in services.started[0].log
