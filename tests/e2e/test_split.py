"""One big file summed by two executors side by side, over HTTP (local disk and S3)."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import wait_for
from tests.csvfiles import write_numbers
from tests.e2e.client import finished, local, submit, task
from tests.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.e2e

# Parts of 256 KiB: a 3 MB file makes a dozen.
SPLIT = {"SPLIT_SIZE": str(256 << 10), "EXECUTOR_THREADS": "1"}


def two_executors(services, **env: str) -> str:
    """The API's URL once both executors consume (else one could take every part)."""
    url = services.backend()
    services.executor(**SPLIT, **env)
    services.executor(**SPLIT, **env)
    live = lambda: len(requests.get(f"{url}/executors", timeout=5).json()["executors"]) == 2  # noqa: E731
    wait_for(live, timeout=60)
    return url


def check_split(record: dict, expected: list, size: int) -> None:
    assert record["status"] == "done", record["error"]
    assert [column["sum"] for column in record["result"]["columns"]] == expected
    parts = record["parts"]
    assert parts["total"] == parts["done"] == size // (256 << 10) + 1
    assert parts["failed"] == 0
    assert len(parts["executors"]) == 2  # both took parts
    assert record["bytes_read"] == record["bytes_total"] == size
    assert record["progress"] == 1


def test_two_executors_sum_the_parts_of_one_local_file(settings, services):
    api = two_executors(services)
    path = settings.data_dir / "big.csv"
    expected = write_numbers(path, rows=10_000, columns=40, seed=5)
    task_id = submit(api, local("big.csv"))
    running = wait_for(lambda: (t := task(api, task_id)).get("parts") and t, timeout=30)
    assert running["parts"]["total"] > 1  # shown while the parts run
    record = finished(api, task_id, timeout=60)
    check_split(record, expected, path.stat().st_size)
    assert record["rows_read"] == record["result"]["rows"] == 10_000


def test_two_executors_sum_the_parts_of_one_s3_object(bucket, services, tmp_path):
    s3 = bucket.settings
    api = two_executors(services, AWS_URL=s3.aws_url, AWS_ID="testing", AWS_SECRET="testing")
    path = tmp_path / "big.csv"
    expected = write_numbers(path, rows=10_000, columns=40, seed=6)
    bucket.upload("big.csv", path)
    task_id = submit(api, {"storage": "s3", "bucket": bucket.name, "key": "big.csv"})
    check_split(finished(api, task_id, timeout=60), expected, path.stat().st_size)


@pytest.mark.slow
def test_an_executor_killed_mid_part_has_its_part_taken_over_with_exact_sums(
    bucket, services, tmp_path
):
    """Every S3 response starts late and a third break off midway (resumed by ranged GETs
    pinned to the ETag): parts take a second or more, so the executor killed holds one."""
    faults = Faults(cut=0.3, cut_within=200_000, delay=1.0, max_delay=1.0, seed=3)
    proxy = FaultProxy(int(bucket.settings.aws_url.rsplit(":", 1)[1]), faults)
    env = {"AWS_URL": proxy.url, "AWS_ID": "testing", "AWS_SECRET": "testing"}
    api = two_executors(services, LEASE="2", STORAGE_ATTEMPTS="10", **env)
    path = tmp_path / "big.csv"
    expected = write_numbers(path, rows=10_000, columns=40, seed=7)
    bucket.upload("big.csv", path)
    task_id = submit(api, {"storage": "s3", "bucket": bucket.name, "key": "big.csv"})
    wait_for(lambda: (task(api, task_id).get("parts") or {}).get("done", 0) >= 2, timeout=60)
    victim = services.started[1]  # the first executor (the backend started first)
    victim.process.kill()
    record = finished(api, task_id, timeout=120)
    proxy.close()
    assert record["status"] == "done", record["error"]
    assert [column["sum"] for column in record["result"]["columns"]] == expected
    assert record["parts"]["done"] == record["parts"]["total"]
    assert record["resumes"] > 0  # the cut responses were continued, within their parts
