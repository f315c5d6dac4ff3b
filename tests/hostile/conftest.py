"""One real stack for the whole hostile corpus: a backend, two executors, a moto bucket.

Starting processes costs seconds, so the corpus shares them (module scope) under a Redis
prefix and a queue of its own. What the corpus proves is exactly that sharing is safe: after
each hostile case every process is still alive and the next good task is done exactly. An
executor that died anyway is counted in `Corpus.deaths` and started again, so that one
broken case does not fail every case after it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from colsum.s3client import make_client
from colsum.settings import Settings
from tests.conftest import (
    Service,
    Services,
    delete_bucket,
    own_settings,
    remove_test_data,
    wait_for,
)

TASK_TIME_LIMIT = 20  # seconds: a hostile task that hangs fails well inside the corpus
UPLOAD_MAX_BYTES = 1 << 20
# The redirect case needs one allowed receiver (both the backend and executors check).
WEBHOOK_ALLOWED_HOSTS = "127.0.0.2"
MAX_BODY = 4 << 20  # a record bigger than this is itself a failure (an unbounded result)
EXECUTORS = 2
SPLIT_SIZE = 1 << 20  # files over 1 MiB are summed in parts: every case holds for them too

# The good task run after every case: its sums are known to the last digit.
GOOD_CSV = (
    ",".join("abcdefghijklmnopqrst") + "\n"
    "1,2,3,4,5,6,7,8,9,1.25,1,2,3,4,5,6,7,8,9,10000000000000000000001\n"
    "1,2,3,4,5,6,7,8,9,2.5,1,2,3,4,5,6,7,8,9,2\n"
    "1,2,3,4,5,6,7,8,9,-0.75,1,2,3,4,5,6,7,8,9,3\n"
)
GOOD_RESULT = {
    "rows": 3,
    "columns": [
        {"column": 10, "name": "j", "sum": 3},
        {"column": 20, "name": "t", "sum": 10000000000000000000006},
    ],
}


def get(url: str, timeout: float = 10, **params) -> tuple[int, dict]:
    """GET a JSON answer, reading at most MAX_BODY bytes of it, sums as Decimal."""
    with requests.get(url, params=params, timeout=timeout, stream=True) as response:
        body = response.raw.read(MAX_BODY + 1, decode_content=True)
    assert len(body) <= MAX_BODY, f"GET {url} answered more than {MAX_BODY >> 20} MiB"
    return response.status_code, json.loads(body, parse_float=Decimal)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of every live descendant (work moved to a child counts)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, family = 0.0, {pid}
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                changed = True
    for member in family:
        total += times.get(member, 0.0)
    return total


@dataclass
class Corpus:
    settings: Settings
    services: Services
    api: str
    backend: Service
    bucket: str
    executors: list[Service] = field(default_factory=list)
    deaths: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def start_executor(self) -> Service:
        service = self.services.executor(
            TASK_TIME_LIMIT=str(TASK_TIME_LIMIT),
            WEBHOOK_ATTEMPTS="2",
            WEBHOOK_BACKOFF="0.2",
            WEBHOOK_ALLOWED_HOSTS=WEBHOOK_ALLOWED_HOSTS,
            OUTBOX_GRACE="600",  # the long-poll case keeps an unpublished record queued
            S3_ALLOWED_BUCKETS=self.bucket,
            SPLIT_SIZE=str(SPLIT_SIZE),
        )
        self.executors.append(service)
        return service

    def revive(self) -> list[str]:
        """Start again any executor that died (noting it in `deaths`); the backend too."""
        for service in list(self.executors):
            if service.process.poll() is not None:
                self.deaths.append(
                    f"executor {service.process.pid} exited with {service.process.returncode};"
                    f" its log ends:\n{service.log[-3000:]}"
                )
                self.executors.remove(service)
                self.start_executor()
        if self.backend.process.poll() is not None:
            self.deaths.append(f"the backend exited; its log ends:\n{self.backend.log[-3000:]}")
        return self.deaths

    def cpu_growth(self, seconds: float = 2.0) -> float:
        """CPU seconds the executors (and their children) spend over the next `seconds`."""

        def cpu() -> float:
            return sum(cpu_seconds(service.process.pid) for service in self.executors)

        start = cpu()
        time.sleep(seconds)
        return cpu() - start

    def submit(self, source: dict) -> str:
        response = requests.post(f"{self.api}/tasks", json=source, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def task(self, task_id: str) -> dict:
        status, body = get(f"{self.api}/tasks/{task_id}")
        assert status == 200, body
        return body

    def finished(self, task_id: str, timeout: float) -> dict:
        """The task once it has finished; fails after `timeout` seconds, saying how far
        it had got."""
        deadline = time.monotonic() + timeout
        while True:
            self.revive()
            task = self.task(task_id)
            if task["status"] in ("done", "failed", "cancelled"):
                return task
            if time.monotonic() > deadline:
                pytest.fail(
                    f"task {task_id} still {task['status']} after {timeout}s"
                    f" (read {task['bytes_read']} of {task['bytes_total']} bytes)"
                )
            time.sleep(0.1)

    def good_task_is_done_exactly(self) -> None:
        task = self.finished(self.submit({"storage": "local", "path": "good.csv"}), 15)
        assert task["status"] == "done", f"the good task after the case: {task['error']}"
        assert task["result"] == GOOD_RESULT


@pytest.fixture(scope="module")
def corpus(redis_url: str, amqp_url: str, moto_url: str, tmp_path_factory) -> Iterator[Corpus]:
    name = f"colsum-hostile-{uuid.uuid4().hex[:12]}"
    root = tmp_path_factory.mktemp("hostile")
    data_dir = root / "data"
    data_dir.mkdir()
    (data_dir / "good.csv").write_text(GOOD_CSV)
    settings = own_settings(
        name,
        redis_url,
        amqp_url,
        data_dir,
        storage_budget=5,
        stop_grace=3,
        # A poison task dead-letters after its second delivery: today's crashing cases
        # would otherwise kill a fresh executor five times over.
        delivery_limit=1,
        aws_url=moto_url,
        aws_id="testing",
        aws_secret="testing",
        s3_read_timeout=5,
    )
    s3 = make_client(settings)
    bucket = f"hostile-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    services = Services(settings, root)
    try:
        api = services.backend(
            UPLOAD_MAX_BYTES=str(UPLOAD_MAX_BYTES),
            WEBHOOK_ALLOWED_HOSTS=WEBHOOK_ALLOWED_HOSTS,
            S3_ALLOWED_BUCKETS=bucket,
        )
        corpus = Corpus(settings, services, api, services.started[0], bucket)
        for _ in range(EXECUTORS):
            corpus.start_executor()
        wait_for(lambda: len(get(f"{api}/executors")[1]["executors"]) == EXECUTORS, timeout=30)
        yield corpus
    finally:
        for service in services.started:
            service.terminate()
        for service in services.started:
            service.stop(timeout=10)
        delete_bucket(s3, bucket)
        remove_test_data(redis_url, amqp_url, name)
