"""Tiny tasks through the whole path, beside a bare pika loop as the peer, in one run.

    python bench/throughput.py [--tasks 2000] [--clients 16] [--executors 2] [--rounds 3]

Colsum: about `--tasks` tasks of a 3-row file are POSTed over HTTP by wrk (Debian package wrk;
Python threads when it is missing, which cost more CPU) from `--clients` connections to a
backend of 4 gunicorn workers with `--executors` executors; a task's latency is its record's
finished_at - created_at. The bare loop: one process publishes as many messages, each
waiting for its confirm, to 2 consumer processes (prefetch 1, manual ack, one Redis HSET).
Both on the same 2 cores as the client, which costs them alike. Then the executors alone:
the tasks are POSTed first, and the executors started after empty the backlog. The three
run in turn, `--rounds` times; the table gives medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pika
import redis
import requests
from stack import ROOT, Stack, cpu_seconds, stack

DATA = ROOT / "bench" / "data"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def server_pid(name: str) -> int | None:
    """The pid of a local server (redis-server, RabbitMQ's beam.smp), if one runs here."""
    found = subprocess.run(["pgrep", "-o", "-f", name], capture_output=True, text=True).stdout
    return int(found) if found.strip() else None


def colsum(
    tasks: int, clients: int, executors: int
) -> tuple[float, list[float], float, dict[str, float]]:
    """tasks/s, latencies, POSTs/s, and the CPU microseconds a task cost each part."""
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "tiny.csv").write_text("a,b,c,d,e,f,g,h,i,j\n" + "1,2,3,4,5,6,7,8,9,10\n" * 3)
    with stack(DATA, WEB_CONCURRENCY="4") as running:
        for _ in range(executors):
            running.start_executor()
        running.wait_for_executors()
        parts = {
            "backend": [running.backend.pid],
            "executors": [process.pid for process in running.executors],
            "Redis": [server_pid("redis-server")],
            "RabbitMQ": [server_pid("beam.smp")],
        }
        parts = {name: [pid for pid in pids if pid] for name, pids in parts.items()}
        before = {name: sum(map(cpu_seconds, pids)) for name, pids in parts.items()}
        started = time.perf_counter()
        post_all(running, tasks, clients)
        posting = time.perf_counter() - started
        while active(running.api):
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        used = {name: sum(map(cpu_seconds, pids)) - before[name] for name, pids in parts.items()}
        client = redis.Redis.from_url(running.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        latencies = []
        keys = list(client.scan_iter(match=f"{running.name}:task:*", count=1000))
        for key in keys:
            created, finished = client.hmget(key, "created_at", "finished_at")
            latencies.append((stamp(finished) - stamp(created)) * 1000)
    cost = {name: seconds * 1e6 / len(keys) for name, seconds in used.items() if parts[name]}
    return len(keys) / seconds, latencies, len(keys) / posting, cost


def drain(tasks: int, clients: int, executors: int) -> tuple[int, float, float]:
    """The executors alone: a backlog of `tasks` tiny tasks is POSTed before they start,
    then emptied by them. Its size, tasks/s, and their CPU microseconds a task."""
    with stack(DATA, WEB_CONCURRENCY="4") as running:
        post_all(running, tasks, clients, exactly=True)
        for _ in range(executors):
            running.start_executor()
        running.wait_for_executors()
        pids = [process.pid for process in running.executors]
        backlog = active(running.api)  # the few done while they registered are not counted
        before = sum(map(cpu_seconds, pids))
        started = time.perf_counter()
        while active(running.api):
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        used = sum(map(cpu_seconds, pids)) - before
    return backlog, backlog / seconds, used * 1e6 / backlog


def active(api: str) -> int:
    return requests.get(f"{api}/tasks/active", timeout=10).json()["active"]


def post_all(running: Stack, tasks: int, clients: int, exactly: bool = False) -> None:
    """About `tasks` POSTs with wrk (stopped once that many are recorded; a few more are
    in flight then), or `exactly` that many."""
    if shutil.which("wrk") and not exactly:
        script = str(ROOT / "bench" / "post.lua")
        command = ["wrk", "-t2", f"-c{clients}", "-d600s", "-s", script, f"{running.api}/tasks"]
        # Each thread stops after its half; wrk itself runs for its duration regardless.
        wrk = subprocess.Popen([*command, "--", str(tasks // 2)], stdout=subprocess.DEVNULL)
        store = redis.Redis.from_url(running.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        while int(store.get(f"{running.name}:sequence") or 0) < tasks and wrk.poll() is None:
            time.sleep(0.005)
        wrk.terminate()
        wrk.wait()
        return
    session = requests.Session()

    def post(_: int) -> None:
        body = {"storage": "local", "path": "tiny.csv"}
        session.post(f"{running.api}/tasks", json=body, timeout=30).raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(tasks)))


def stamp(value: bytes) -> float:
    return datetime.fromisoformat(value.decode().replace("Z", "+00:00")).timestamp()


def bare_loop(tasks: int) -> tuple[float, list[float]]:
    name = f"colsum-bench-bare-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url()))
    channel = connection.channel()
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    consumers = [
        subprocess.Popen([sys.executable, __file__, "--consume", name, str(tasks)], cwd=ROOT)
        for _ in range(2)
    ]
    time.sleep(1.5)
    started = time.perf_counter()
    for _ in range(tasks):
        channel.basic_publish(
            "", name, str(time.time()).encode(), pika.BasicProperties(delivery_mode=2)
        )
    client = redis.Redis()
    while client.hlen(name) < tasks:
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    latencies = [float(v) for v in client.hvals(name)]
    for consumer in consumers:
        consumer.terminate()
        consumer.wait()
    client.delete(name)
    channel.queue_delete(name)
    connection.close()
    return tasks / seconds, latencies


def consume(name: str) -> None:
    """The bare loop's consumer: prefetch 1, one Redis write, then the ack."""
    client = redis.Redis()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url()))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)

    def on_message(channel, method, _properties, body) -> None:
        latency_ms = (time.time() - float(body)) * 1000
        client.hset(name, uuid.uuid4().hex, latency_ms)
        channel.basic_ack(method.delivery_tag)

    channel.basic_consume(name, on_message)
    channel.start_consuming()


def amqp_url() -> str:
    return os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--consume", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(args.consume[0])
        return
    bare: list[tuple[float, list[float]]] = []
    ours: list[tuple[float, list[float], float, dict[str, float]]] = []
    drains: list[tuple[int, float, float]] = []
    for round_ in range(args.rounds):
        bare.append(bare_loop(args.tasks))
        ours.append(colsum(args.tasks, args.clients, args.executors))
        drains.append(drain(args.tasks, args.clients, args.executors))
        print(f"round {round_ + 1} of {args.rounds} done", flush=True)
    bare_rate = statistics.median(rate for rate, _ in bare)
    rate = statistics.median(run[0] for run in ours)
    rows = {
        "bare pika loop (confirms, prefetch 1, ack, 1 Redis write)": (
            bare_rate,
            [latency for _, latencies in bare for latency in latencies],
        ),
        "Colsum via HTTP (POST -> done)": (
            rate,
            [latency for run in ours for latency in run[1]],
        ),
    }
    cost = {name: statistics.median(run[3][name] for run in ours) for name in ours[0][3]}
    lines = [
        f"# Throughput: about {args.tasks} tiny tasks, {args.rounds} interleaved rounds, "
        f"medians: 2 consumers, {args.executors} executors",
        "",
        "| path | tasks/s | p50 latency | p99 latency |",
        "| --- | --- | --- | --- |",
    ]
    for path, (tasks_per_second, latencies) in rows.items():
        lines.append(
            f"| {path} | {tasks_per_second:.0f} | {statistics.median(latencies):.1f} ms "
            f"| {percentile(latencies, 0.99):.1f} ms |"
        )
    lines += [
        "",
        f"Colsum against the bare loop: {rate / bare_rate:.2f}x "
        f"(rounds: {', '.join(f'{run[0]:.0f}' for run in ours)} tasks/s).",
        f"The backend alone accepted {statistics.median(run[2] for run in ours):.0f} "
        "POST /tasks a second meanwhile.",
        f"The executors alone emptied a backlog of about {drains[0][0]} of them at "
        f"{statistics.median(d[1] for d in drains):.0f} tasks/s,",
        f"with {statistics.median(d[2] for d in drains):,.0f} us of their CPU a task "
        "(HTTP out of the measure).",
        "",
        "CPU time a Colsum task cost, by part (from /proc; Redis's and RabbitMQ's count",
        "whatever else they served meanwhile):",
        "",
        "| part | CPU a task |",
        "| --- | --- |",
        *(f"| {name} | {micros:,.0f} us |" for name, micros in cost.items()),
        f"| all | {sum(cost.values()):,.0f} us |",
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (ROOT / "bench" / "throughput.md").write_text(text)


if __name__ == "__main__":
    main()
