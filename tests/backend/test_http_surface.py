"""What a hostile or careless client can send a real backend (gunicorn, uvicorn's workers),
byte for byte: every answer is a JSON error or a success, never a 500, never a hang."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from contextlib import ExitStack

import pytest
import requests

# backend.asgi.CLIENT_IDLE and backend.server.HEAD_DEADLINE
CLIENT_IDLE = 10
HEAD_DEADLINE = 10
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


@pytest.mark.parametrize("route", ["/healthz", f"/tasks/{UNKNOWN}", "/executors"])
def test_answers_do_not_name_the_server_software(backend, route):
    """Neither the fast lane, nor Flask's answers behind it."""
    assert "server" not in requests.get(f"{backend}{route}", timeout=10).headers


@pytest.mark.slow
def test_a_stopped_backend_logs_no_error_about_its_sockets(backend, services):
    services.started[0].stop()
    log = services.started[0].log
    assert "Shutting down" in log
    assert "Error while closing socket" not in log


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


@pytest.mark.slow
def test_a_head_not_sent_whole_within_its_deadline_is_hung_up(backend):
    port = int(backend.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=HEAD_DEADLINE + 10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert sock.recv(1) == b""  # closed by the backend, well before the socket times out


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 10_000 + b"\r\n",
    ],
    ids=["header", "request-line", "many-headers"],
)
def test_a_head_over_64_kib_is_a_json_431(backend, head):
    assert_431(backend, head)


def test_a_head_over_64_kib_behind_a_request_in_work_is_a_json_431(backend):
    """uvicorn goes on reading the next request while one is in work (a long poll here)."""
    task = requests.post(f"{backend}/tasks", json=LOCAL, timeout=10).json()["id"]
    host, port = backend.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /tasks/{task}?wait=5 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: ")
        with contextlib.suppress(OSError):  # hung up on before the last pieces
            for _ in range(40):  # the rest in pieces, each read on its own
                sock.sendall(b"a" * 5000)
                time.sleep(0.01)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert b"HTTP/1.1 431" in answer


def assert_431(backend: str, head: bytes) -> None:
    """`head` sent whole, the answer read to the end."""
    host, port = backend.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert b"HTTP/1.1 431" in answer
    assert b'{"error":"the request\'s line and headers are larger than 64 KiB"}' in answer


def test_a_request_that_is_not_http_is_a_json_400(backend):
    status, body = exchange(backend, b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n")
    assert status == 400
    assert json.loads(body)["error"].startswith("the request is not valid HTTP: ")


def test_a_client_that_closes_its_side_after_the_request_still_gets_the_answer(backend):
    body = json.dumps(LOCAL).encode()
    request = (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    host, port = backend.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 202")
