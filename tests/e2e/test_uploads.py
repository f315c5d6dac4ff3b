"""Uploads through a real backend (gunicorn): a body too large, cut short or broken off is
refused, and leaves nothing behind, on local disk and in S3."""

from __future__ import annotations

import http.client
import json
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import wait_for
from tests.e2e.client import finished

pytestmark = pytest.mark.e2e

HEAD = b"a,b,c,d,e,f,g,h,i,j\n"
ROW = b"1,2,3,4,5,6,7,8,9,10\n"


def rows(size: int) -> bytes:
    """A CSV of about `size` bytes (a header, then whole rows)."""
    return HEAD + ROW * (size // len(ROW))


def connect(api: str) -> socket.socket:
    url = urlsplit(api)
    return socket.create_connection((url.hostname, url.port), timeout=30)


def send_head(sock: socket.socket, length: int | None, query: str = "") -> None:
    lines = [f"POST /tasks{query} HTTP/1.1", "Host: colsum", "Content-Type: text/csv"]
    lines.append(f"Content-Length: {length}" if length is not None else "Connection: close")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def answer(sock: socket.socket) -> tuple[int, dict]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read())


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a client that crashed or lost its network would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def left_behind(settings) -> list[str]:
    uploads = settings.data_dir / "uploads"
    return sorted(p.name for p in uploads.rglob("*") if p.is_file())


def no_task_created(store) -> bool:
    return store.counts() == {"active": 0, "queued": 0, "running": 0}


def test_a_content_length_over_upload_max_bytes_is_413_before_the_body_is_read(
    settings, services, store
):
    api = services.backend(UPLOAD_MAX_BYTES="1000")
    with connect(api) as sock:
        send_head(sock, length=5000)  # and not a byte of the body
        status, body = answer(sock)
    assert status == 413
    assert body == {
        "error": "the upload is larger than 1000 bytes, the most this service accepts "
        "(UPLOAD_MAX_BYTES=1000)"
    }
    assert left_behind(settings) == []
    assert no_task_created(store)


def test_a_chunked_upload_is_413_once_it_passes_upload_max_bytes(settings, services, store):
    api = services.backend(UPLOAD_MAX_BYTES=str(10 << 10))
    response = requests.post(
        f"{api}/tasks",
        data=iter([rows(8 << 10), rows(8 << 10)]),  # a generator: sent chunked, no length
        headers={"Content-Type": "text/csv"},
        timeout=30,
    )
    assert response.status_code == 413
    assert "larger than 10 KiB" in response.json()["error"]
    assert "UPLOAD_MAX_BYTES=10240" in response.json()["error"]
    assert left_behind(settings) == []
    assert no_task_created(store)


def test_an_upload_within_upload_max_bytes_is_summed(settings, services):
    api = services.backend(UPLOAD_MAX_BYTES=str(len(HEAD + ROW)))
    services.executor()
    response = requests.post(
        f"{api}/tasks", data=HEAD + ROW, headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert response.status_code == 202, response.text
    assert finished(api, response.json()["id"])["result"]["columns"][0]["sum"] == 10


def test_a_body_cut_short_of_its_content_length_is_400_and_not_kept(settings, services, store):
    api = services.backend()
    data = rows(5000)
    with connect(api) as sock:
        send_head(sock, length=100_000)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the client is done sending, but not all arrived
        status, body = answer(sock)
    assert status == 400
    assert body == {"error": f"the upload was cut short: {len(data)} of 100000 bytes arrived"}
    assert left_behind(settings) == []
    assert no_task_created(store)


def test_a_connection_reset_mid_upload_leaves_no_part_file(settings, services, store):
    api = services.backend()
    sock = connect(api)
    send_head(sock, length=50 << 20)
    sock.sendall(rows(4 << 20))
    wait_for(lambda: any(name.endswith(".part") for name in left_behind(settings)))

    reset(sock)

    wait_for(lambda: left_behind(settings) == [], timeout=10)
    assert no_task_created(store)
    after = requests.post(
        f"{api}/tasks", data=HEAD + ROW, headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert after.status_code == 202  # the backend is fine


@pytest.fixture
def s3_api(bucket, services):
    env = {"AWS_URL": bucket.settings.aws_url, "AWS_ID": "testing", "AWS_SECRET": "testing"}
    return services.backend(UPLOAD_BUCKET=bucket.name, **env)


def objects(bucket) -> list[str]:
    listed = bucket.client.list_objects_v2(Bucket=bucket.name)
    return [item["Key"] for item in listed.get("Contents", [])]


def multipart_uploads(bucket) -> list[str]:
    listed = bucket.client.list_multipart_uploads(Bucket=bucket.name)
    return [item["Key"] for item in listed.get("Uploads", [])]


def test_an_upload_to_s3_cut_short_is_400_and_leaves_no_object_or_multipart_upload(
    bucket, s3_api, store
):
    data = rows(20 << 20)  # more than two 8 MiB parts
    with connect(s3_api) as sock:
        send_head(sock, length=len(data) + 1000)  # a thousand bytes never come
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        status, body = answer(sock)
    assert status == 400
    assert (
        body["error"]
        == f"the upload was cut short: {len(data)} of {len(data) + 1000} bytes arrived"
    )
    assert objects(bucket) == []
    assert multipart_uploads(bucket) == []
    assert no_task_created(store)


def test_an_upload_to_s3_reset_midway_aborts_its_multipart_upload(bucket, s3_api, store):
    sock = connect(s3_api)
    send_head(sock, length=100 << 20)
    sock.sendall(rows(20 << 20))
    wait_for(lambda: multipart_uploads(bucket))

    reset(sock)

    wait_for(lambda: multipart_uploads(bucket) == [], timeout=10)
    assert objects(bucket) == []
    assert no_task_created(store)


def test_a_large_upload_to_s3_is_stored_whole_in_parts(bucket, s3_api):
    data = rows(20 << 20)
    response = requests.post(
        f"{s3_api}/tasks", data=data, headers={"Content-Type": "text/csv"}, timeout=60
    )
    assert response.status_code == 202, response.text
    key = response.json()["source"]["key"]
    stored = bucket.client.get_object(Bucket=bucket.name, Key=key)
    assert stored["Body"].read() == data
    assert stored["ETag"].endswith('-3"')  # three parts: 8, 8 and 4 MiB


@pytest.mark.slow
def test_uploads_to_s3_hold_one_part_each_in_memory(bucket, services):
    """boto3's upload_fileobj held up to ten 8 MiB parts per upload (and copies of them):
    three 100 MB uploads at once took a worker past 580 MiB of data; one part each stays
    near 200 MiB."""
    env = {"AWS_URL": bucket.settings.aws_url, "AWS_ID": "testing", "AWS_SECRET": "testing"}
    api = services.backend(
        limit_data=300 << 20, UPLOAD_BUCKET=bucket.name, WEB_CONCURRENCY="1", **env
    )
    data = rows(100 << 20)
    with ThreadPoolExecutor(3) as pool:
        answers = list(
            pool.map(
                lambda _: requests.post(
                    f"{api}/tasks", data=data, headers={"Content-Type": "text/csv"}, timeout=120
                ),
                range(3),
            )
        )
    assert [a.status_code for a in answers] == [202] * 3, [a.text for a in answers]
    for created in answers:
        key = created.json()["source"]["key"]
        stored = bucket.client.head_object(Bucket=bucket.name, Key=key)
        assert stored["ContentLength"] == len(data)


def test_an_upload_that_stalls_is_dropped_after_upload_idle_timeout(settings, services, store):
    """A client that stops sending would hold one of the backend's threads for good."""
    api = services.backend(UPLOAD_IDLE_TIMEOUT="1")
    with connect(api) as sock:
        send_head(sock, length=10_000)
        sock.sendall(HEAD)  # and then nothing, the connection still open
        status, body = answer(sock)
    assert status == 400
    assert body == {"error": "the upload stalled: nothing arrived for 1 s (UPLOAD_IDLE_TIMEOUT)"}
    assert left_behind(settings) == []
    assert no_task_created(store)


def test_a_compressed_upload_is_refused_with_415_saying_what_to_send(settings, client):
    response = client.post(
        "/tasks", data=b"\x1f\x8b...", content_type="text/csv", headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 415
    assert response.get_json() == {
        "error": "send the CSV uncompressed: Content-Encoding 'gzip' is not supported"
    }
    assert left_behind(settings) == []


def test_a_broken_chunked_upload_is_400_not_500(settings, services, store):
    api = services.backend()
    with connect(api) as sock:
        sock.sendall(
            b"POST /tasks HTTP/1.1\r\nHost: colsum\r\nContent-Type: text/csv\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\na,b,c\r\nZZ\r\n"
        )
        status, body = answer(sock)
    assert status == 400
    assert body == {
        "error": "the request's chunked encoding is broken: Invalid character in chunk size"
    }
    # The 400 comes from the parser, on the event loop, as the read in Flask's thread
    # fails: the thread removes what it wrote a moment later.
    wait_for(lambda: left_behind(settings) == [], timeout=5)
    assert no_task_created(store)
