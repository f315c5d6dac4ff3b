"""A Colsum stack of its own for a benchmark: a backend and executors under private names in
the Redis and RabbitMQ of REDIS_URL and AMQP_URL, removed again afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from colsum import broker  # noqa: E402
from colsum.settings import Settings  # noqa: E402


def in_fresh_process(script: str, *args: str) -> dict:
    """Run `script --one ARGS` in a process of its own (its peak RSS and imports its own)
    and read the JSON object it prints."""
    output = subprocess.run(
        [sys.executable, script, "--one", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return json.loads(output)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and its children (a gunicorn master's workers)
    have used so far, from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # a process that ended meanwhile
            continue
        if pid in (int(stat.parent.name), int(fields[1])):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.name = f"colsum-bench-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATA_DIR": str(data_dir),
            "REDIS_PREFIX": f"{self.name}:",
            "AMQP_EXCHANGE": self.name,
            "AMQP_QUEUE": self.name,
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            **env,
        }
        self.executors: list[subprocess.Popen] = []
        self.backend = self._start("backend")

    def _start(self, module: str, cpus: set[int] | None = None, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )

    def start_executor(self, cpus: set[int] | None = None, **env: str) -> None:
        """`cpus`: the only CPUs the executor (every thread of it) may run on."""
        self.executors.append(self._start("executor", cpus, **env))

    def wait_for_executors(self) -> None:
        """Until every executor started has registered: it has loaded its kernels and
        consumes (seconds of CPU at start, which a measurement must not count)."""
        token = self.env.get("ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for _ in range(600):
            answer = requests.get(f"{self.api}/executors", headers=headers, timeout=10)
            listed = answer.json()["executors"]
            if len(listed) >= len(self.executors):
                return
            time.sleep(0.1)
        raise SystemExit("the executors did not start")

    def stop_executors(self) -> None:
        for process in self.executors:
            process.terminate()
            process.wait()
        self.executors = []

    def wait_ready(self) -> None:
        for _ in range(200):
            with contextlib.suppress(requests.ConnectionError):
                requests.get(f"{self.api}/tasks/active", timeout=1)
                return
            time.sleep(0.1)
        raise SystemExit("the backend did not start")

    def post_to_done(self, source: dict, token: str | None = None) -> tuple[float, dict]:
        """Seconds from POST /tasks to status done, and the final record."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.perf_counter()
        response = requests.post(f"{self.api}/tasks", json=source, headers=headers, timeout=10)
        response.raise_for_status()
        while True:  # a long poll: polling would take CPU from the executor
            url = f"{self.api}{response.headers['Location']}?wait=30"
            task = requests.get(url, headers=headers, timeout=40).json()
            if task["status"] == "done":
                return time.perf_counter() - started, task
            if task["status"] == "failed":
                raise SystemExit(f"task failed: {task['error']}")

    def close(self) -> None:
        self.stop_executors()
        self.backend.terminate()
        self.backend.wait()
        settings = Settings.from_env()
        client = redis.Redis.from_url(settings.redis_url)
        for key in client.scan_iter(match=f"{self.name}:*"):
            client.delete(key)
        connection = broker.connect(settings.amqp_url)
        channel = connection.channel()
        for name in (self.name, f"{self.name}.dead"):
            channel.queue_delete(name)
            channel.exchange_delete(name)
        connection.close()


@contextlib.contextmanager
def stack(data_dir: Path, **env: str) -> Iterator[Stack]:
    running = Stack(data_dir, **env)
    try:
        running.wait_ready()
        yield running
    finally:
        running.close()
