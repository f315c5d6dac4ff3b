"""S3 tasks over HTTP, with executors reading moto through a connection that keeps breaking."""

from __future__ import annotations

import time

import pytest
import requests

from tests.csvfiles import write_numbers
from tests.e2e.client import finished, submit
from tests.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.e2e


@pytest.fixture
def s3_api(bucket, services):
    """The API and two executors whose S3 endpoint is a proxy cutting a third of its
    responses mid-body, answering some connections 503 SlowDown and delaying others."""
    faults = Faults(cut=0.33, cut_within=12_000_000, slow_down=0.05, delay=0.2, seed=11)
    proxy = FaultProxy(int(bucket.settings.aws_url.rsplit(":", 1)[1]), faults)
    env = {
        "AWS_URL": proxy.url,
        "AWS_ID": "testing",
        "AWS_SECRET": "testing",
        "STORAGE_ATTEMPTS": "10",
    }
    url = services.backend()
    services.executor(**env)
    services.executor(**env)
    yield url, proxy
    proxy.close()


def s3(bucket: str, key: str) -> dict:
    return {"storage": "s3", "bucket": bucket, "key": key}


@pytest.mark.slow
def test_tasks_survive_cut_connections_with_exact_sums_and_without_restarts(
    bucket, s3_api, tmp_path
):
    api, proxy = s3_api
    expected, sizes = {}, {}
    for seed in range(3):
        path = tmp_path / f"f{seed}.csv"
        expected[f"f{seed}.csv"] = write_numbers(path, rows=100_000, columns=20, seed=seed)
        sizes[f"f{seed}.csv"] = path.stat().st_size
        bucket.upload(f"f{seed}.csv", path)
    keys = [f"f{n % 3}.csv" for n in range(12)]
    ids = [submit(api, s3(bucket.name, key)) for key in keys]

    records = [finished(api, task_id, timeout=180) for task_id in ids]
    for key, record in zip(keys, records, strict=True):
        assert record["status"] == "done", record["error"]
        assert [c["sum"] for c in record["result"]["columns"]] == expected[key]
        assert record["bytes_read"] == sizes[key]
    assert proxy.counts.cuts >= proxy.counts.responses / 5
    # A cut that falls between two responses is botocore's to retry, not a resume.
    assert sum(record["resumes"] for record in records) >= proxy.counts.cuts // 2
    assert proxy.counts.bytes_down < 1.5 * sum(sizes[key] for key in keys)


@pytest.mark.parametrize(
    ("key", "make_bucket", "message"),
    [
        ("missing.csv", True, "s3://{bucket}/missing.csv does not exist"),
        ("a.csv", False, "bucket 'no-such-bucket-{bucket}' does not exist"),
    ],
)
def test_a_task_that_can_never_succeed_fails_within_seconds(
    bucket, s3_api, key, make_bucket, message
):
    api, _ = s3_api
    name = bucket.name if make_bucket else f"no-such-bucket-{bucket.name}"[:63]
    started = time.monotonic()
    record = finished(api, submit(api, s3(name, key)), timeout=10)
    assert record["status"] == "failed"
    assert message.format(bucket=bucket.name)[:60] in record["error"]
    assert time.monotonic() - started < 5


def test_an_upload_goes_to_the_upload_bucket_when_one_is_set(bucket, services):
    s3_env = {"AWS_URL": bucket.settings.aws_url, "AWS_ID": "testing", "AWS_SECRET": "testing"}
    api = services.backend(UPLOAD_BUCKET=bucket.name, **s3_env)
    services.executor(**s3_env)
    body = b"a,b,c,d,e,f,g,h,i,j\n1,2,3,4,5,6,7,8,9,10\n"
    response = requests.post(
        f"{api}/tasks", data=body, headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert response.status_code == 202, response.text
    created = response.json()
    key = f"uploads/anonymous/{created['id']}.csv"
    assert created["source"] == {"storage": "s3", "bucket": bucket.name, "key": key}
    assert bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read() == body
    assert finished(api, created["id"])["result"]["columns"][0]["sum"] == 10


def test_a_sum_even_task_reads_s3_through_cut_connections_exactly(bucket, s3_api, tmp_path):
    api, proxy = s3_api
    path = tmp_path / "numbers.txt"
    numbers = range(-300_000, 300_000, 3)
    path.write_text(
        "\n".join(" ".join(map(str, numbers[i : i + 10])) for i in range(0, len(numbers), 10))
    )
    bucket.upload("numbers.txt", path)
    record = finished(api, submit(api, {**s3(bucket.name, "numbers.txt"), "op": "sum_even"}), 120)
    assert record["status"] == "done", record["error"]
    assert record["op"] == "sum_even"
    evens = [n for n in numbers if n % 2 == 0]
    assert record["result"] == {"count": len(numbers), "even_count": len(evens), "sum": sum(evens)}
    assert record["bytes_read"] == path.stat().st_size
    assert proxy.counts.responses >= 1  # it went through the proxy that cuts
