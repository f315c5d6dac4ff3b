"""The chaos check: tasks must end as expected while executors, RabbitMQ and Redis fail.

    python scripts/chaos.py [--tasks 100] [--big-rows 300000] [--restart-broker]

Starts a Redis of its own (AOF, its own port and data directory) and uses a RabbitMQ vhost
of its own, runs the backend and 3 executors, and submits tasks of mixed sizes: most must
end `done` with exact sums, a few with bad CSV must fail naming the line, and a few poison
ones (S3 objects whose body never arrives, from a stalling endpoint of the check's own)
are SIGKILLed with whichever executor picks them up,
every time, until the delivery limit fails them. Meanwhile it SIGKILLs a random busy
executor every few seconds and starts a replacement, and restarts Redis and RabbitMQ once
(`--restart-broker` restarts the whole broker; without it, the broker closes every
connection of the vhost, which is what clients see of a restart). It prints a report and
exits 1 unless every task ended as expected.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.csvfiles import write_numbers  # noqa: E402
from tests.slowsource import SlowSource  # noqa: E402

EXECUTORS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, stdout=subprocess.DEVNULL)


@dataclass
class Expected:
    kind: str  # "done", "bad" or "poison"
    sums: list[Decimal] = field(default_factory=list)


class Chaos:
    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.random = random.Random(args.seed)
        self.data = workdir / "data"
        self.data.mkdir()
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.vhost = f"colsum-chaos-{uuid.uuid4().hex[:8]}"
        self.redis_port = free_port()
        self.api_port = free_port()
        self.redis_process: subprocess.Popen | None = None
        self.executors: list[subprocess.Popen] = []
        self.started = 0
        self.kills = 0
        self.redis_restarts = 0
        self.broker_restarts = 0
        base = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
        self.env = {
            **os.environ,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AMQP_URL": base.rsplit("/", 1)[0] + "/" + self.vhost,
            "DATA_DIR": str(self.data),
            "REDIS_PREFIX": "colsum:",
            "AMQP_EXCHANGE": "colsum",
            "AMQP_QUEUE": "colsum.tasks",
            "PORT": str(self.api_port),
            "DELIVERY_LIMIT": "3",
            "LEASE": "6",
            "SWEEP_INTERVAL": "2",
            "OUTBOX_GRACE": "5",
            "STOP_GRACE": "5",
            "LOG_LEVEL": "INFO",
        }
        # Poison tasks read from here: the header, then nothing, for as long as they live.
        header, row = b"a,b,c,d,e,f,g,h,i,j\n", b"1,2,3,4,5,6,7,8,9,10\n"
        self.stalling = SlowSource(header + row, len(header), release=threading.Event())
        self.env |= self.stalling.env
        self.api = f"http://127.0.0.1:{self.api_port}"

    # -- the pieces ---------------------------------------------------------------------

    def start_redis(self) -> None:
        directory = self.workdir / "redis"
        directory.mkdir(exist_ok=True)
        self.redis_process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.redis_port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise SystemExit("chaos: redis-server did not start")

    def stop_redis(self) -> None:
        if self.redis_process is not None:
            self.redis_process.terminate()  # SIGTERM: Redis flushes its AOF and exits
            self.redis_process.wait(30)

    def start(self, module: str) -> subprocess.Popen:
        self.started += 1
        log = (self.logs / f"{module}-{self.started}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=self.env, stdout=log, stderr=log
        )

    def start_executor(self) -> None:
        self.executors.append(self.start("executor"))

    def kill(self, pid: int) -> None:
        for process in self.executors:
            if process.pid == pid and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                self.executors.remove(process)
                self.kills += 1
                self.start_executor()
                return

    def restart_broker(self) -> None:
        if self.args.restart_broker:
            rabbitmqctl("stop_app")
            rabbitmqctl("start_app")
        else:
            rabbitmqctl("close_all_connections", "--vhost", self.vhost, "chaos check")

    # -- the run ------------------------------------------------------------------------

    def make_tasks(self) -> dict[str, Expected]:
        """File name -> what its task must end as."""
        files: dict[str, Expected] = {}
        big = max(1, self.args.tasks // 20)
        poison = max(1, self.args.tasks // 30)
        bad = max(1, self.args.tasks // 25)
        for n in range(big):
            name = f"big-{n}.csv"
            sums = write_numbers(self.data / name, self.args.big_rows, columns=40, seed=n)
            files[name] = Expected("done", sums)
        for n in range(self.args.tasks - big - poison - bad):
            name = f"small-{n}.csv"
            rows = self.random.randint(10, 5000)
            files[name] = Expected("done", write_numbers(self.data / name, rows, seed=100 + n))
        for n in range(bad):
            name = f"bad-{n}.csv"
            (self.data / name).write_text("a,b,c,d,e,f,g,h,i,j\n1,2,3,4,5,6,7,8,9,oops\n")
            files[name] = Expected("bad")
        for n in range(poison):
            name = f"poison-{n}.csv"
            files[name] = Expected("poison")
        return files

    def run(self) -> int:
        began = time.monotonic()
        files = self.make_tasks()
        names = list(files)
        self.random.shuffle(names)
        self.start_redis()
        rabbitmqctl("add_vhost", self.vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        backend = self.start("backend")
        for _ in range(EXECUTORS):
            self.start_executor()
        try:
            self.wait_for_api()
            ids = {self.submit(name): name for name in names}
            outcome = self.disturb_until_finished(ids, files)
        finally:
            for process in [*self.executors, backend]:
                process.terminate()
            for process in [*self.executors, backend]:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
            self.stop_redis()
            rabbitmqctl("delete_vhost", self.vhost)
        return self.report(ids, files, outcome, time.monotonic() - began)

    def wait_for_api(self) -> None:
        for _ in range(200):
            try:
                requests.get(f"{self.api}/tasks/active", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise SystemExit("chaos: the backend did not start")

    def submit(self, name: str) -> str:
        for _ in range(100):
            source = {"storage": "local", "path": name}
            if name.startswith("poison-"):
                source = self.stalling.source(name)
            response = requests.post(f"{self.api}/tasks", json=source, timeout=10)
            if response.status_code == 202:
                return response.json()["id"]
            time.sleep(0.2)  # 503 while something restarts: as a client would, try again
        raise SystemExit(f"chaos: could not submit {name}: {response.status_code}")

    def records(self, ids: dict[str, str]) -> dict[str, dict]:
        client = redis.Redis(port=self.redis_port, decode_responses=True)
        prefix = "colsum:task:"
        with client.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hgetall(prefix + task_id)
            return dict(zip(ids, pipe.execute(), strict=True))

    def disturb_until_finished(self, ids: dict[str, str], files: dict[str, Expected]) -> dict:
        """Kill, restart and watch until every task finished or the timeout: Redis restarts
        when a third of the tasks are finished, RabbitMQ at two thirds."""
        deadline = time.monotonic() + self.args.timeout
        next_kill = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                records = self.records(ids)
            except redis.ConnectionError:
                time.sleep(0.5)
                continue
            finished = sum(r.get("status") in ("done", "failed") for r in records.values())
            if finished == len(ids):
                return records
            for task_id, record in records.items():
                if files[ids[task_id]].kind == "poison" and record.get("status") == "running":
                    self.kill(int(record["executor"].rsplit(":", 1)[1]))
            if time.monotonic() > next_kill:
                busy = [
                    int(r["executor"].rsplit(":", 1)[1])
                    for r in records.values()
                    if r.get("status") == "running" and r.get("executor")
                ]
                if busy:
                    self.kill(self.random.choice(busy))
                next_kill = time.monotonic() + 1.5
            if not self.redis_restarts and finished >= len(ids) / 3:
                print("chaos: restarting Redis", flush=True)
                self.stop_redis()
                self.start_redis()
                self.redis_restarts += 1
            if not self.broker_restarts and finished >= 2 * len(ids) / 3:
                print("chaos: restarting RabbitMQ", flush=True)
                self.restart_broker()
                self.broker_restarts += 1
            time.sleep(0.2)
        return self.records(ids)

    def report(
        self, ids: dict[str, str], files: dict[str, Expected], records: dict, seconds: float
    ) -> int:
        counts = {
            "done exact": 0,
            "failed as expected": 0,
            "failed unexpectedly": 0,
            "wrong sums": 0,
            "stuck": 0,
        }
        problems = []
        for task_id, name in ids.items():
            record, expected = records[task_id], files[name]
            status = record.get("status")
            if status not in ("done", "failed"):
                counts["stuck"] += 1
                problems.append(f"{name}: stuck {status}")
            elif expected.kind == "done" and status == "done":
                sums = [Decimal(str(c["sum"])) for c in json.loads(record["result"])["columns"]]
                if sums == expected.sums:
                    counts["done exact"] += 1
                else:
                    counts["wrong sums"] += 1
                    problems.append(f"{name}: wrong sums")
            elif status == "failed" and self.failed_as_expected(expected.kind, record["error"]):
                counts["failed as expected"] += 1
            else:
                counts["failed unexpectedly"] += 1
                problems.append(f"{name}: {status} {record.get('error')}")
        duplicates = self.duplicated_writes(ids)
        ok = (
            counts["done exact"] + counts["failed as expected"] == len(ids)
            and not duplicates
            and self.redis_restarts == self.broker_restarts == 1
        )
        print(
            f"\nchaos check: {len(ids)} tasks, {seconds:.1f} s; executors SIGKILLed "
            f"{self.kills} times, Redis restarted {self.redis_restarts} time(s), RabbitMQ "
            f"{self.broker_restarts} time(s)"
        )
        for name, count in counts.items():
            print(f"  {name:22} {count}")
        print(f"  {'duplicated writes':22} {duplicates}")
        for problem in problems[:20]:
            print(f"  - {problem}")
        print("PASSED" if ok else f"FAILED (logs in {self.logs})")
        return 0 if ok else 1

    @staticmethod
    def failed_as_expected(kind: str, error: str) -> bool:
        return (kind == "bad" and "line 2" in error) or (kind == "poison" and "gave up" in error)

    def duplicated_writes(self, ids: dict[str, str]) -> int:
        """Tasks whose result was written more than once, as the executors' logs tell."""
        writes: dict[str, int] = {}
        for path in self.logs.glob("executor-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if ": done, " in line:
                    task_id = line.split("task ", 1)[1].split(":", 1)[0]
                    writes[task_id] = writes.get(task_id, 0) + 1
        return sum(1 for task_id in ids if writes.get(task_id, 0) > 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--big-rows", type=int, default=300_000)
    parser.add_argument("--timeout", type=float, default=600, help="seconds before 'stuck'")
    parser.add_argument("--restart-broker", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    for tool in ("redis-server", "rabbitmqctl"):
        if not shutil.which(tool):
            raise SystemExit(
                f"chaos: {tool} is needed (Debian packages redis-server, rabbitmq-server)"
            )
    workdir = Path(tempfile.mkdtemp(prefix="colsum-chaos-"))
    result = Chaos(workdir, args).run()
    if result == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
