"""POST -> done for one file read from local disk, from S3 (moto), and from S3 through a
proxy that cuts every connection mid-body. Runs interleaved, in one run.

    python bench/s3_vs_local.py [--rows 3000000] [--runs 3]

Starts its own moto server, backend and one executor, under names of its own in the
Redis and RabbitMQ of REDIS_URL and AMQP_URL, and removes them afterwards.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import redis
import requests
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from colsum import broker  # noqa: E402
from colsum.settings import Settings  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.csvfiles import write_numbers  # noqa: E402
from tests.faultproxy import FaultProxy, Faults  # noqa: E402

DATA = ROOT / "bench" / "data"


def post_to_done(api: str, source: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    response = requests.post(f"{api}/tasks", json=source, timeout=10)
    response.raise_for_status()
    while True:
        task = requests.get(f"{api}{response.headers['Location']}", timeout=10).json()
        if task["status"] in ("done", "failed"):
            if task["status"] == "failed":
                raise SystemExit(f"task failed: {task['error']}")
            return time.perf_counter() - started, task
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"numbers-{args.rows}x40.csv"
    if not path.exists():
        print(f"generating {path.name} ...", flush=True)
        write_numbers(path, rows=args.rows, columns=40, seed=1)
    size = path.stat().st_size

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{moto_port}",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="bench")
    s3.upload_file(str(path), "bench", path.name)
    clean = FaultProxy(moto_port, Faults())
    # Every connection is cut within its first 200 MB: about five resumes per GB.
    faulty = FaultProxy(moto_port, Faults(cut=1.0, cut_within=200_000_000, seed=5))

    settings = Settings.from_env()
    name = f"colsum-bench-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(DATA),
        "REDIS_PREFIX": f"{name}:",
        "AMQP_EXCHANGE": name,
        "AMQP_QUEUE": name,
        "PORT": str(port),
        "AWS_ID": "bench",
        "AWS_SECRET": "bench",
        "LOG_LEVEL": "WARNING",
    }
    api = f"http://127.0.0.1:{port}"
    # One executor per endpoint: the S3 endpoint is per process.
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "backend"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "executor"], cwd=ROOT, env={**env, "AWS_URL": clean.url}
        ),
    ]
    try:
        for _ in range(100):
            try:
                requests.get(f"{api}/tasks/active", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        cases = {
            "local disk": ({"storage": "local", "path": path.name}, None),
            "S3 (moto)": ({"storage": "s3", "bucket": "bench", "key": path.name}, clean),
        }
        times: dict[str, list[float]] = {case: [] for case in cases}
        fetched: dict[str, list[int]] = {case: [] for case in cases}
        for _ in range(args.runs):
            for case, (source, proxy) in cases.items():
                before = proxy.counts.bytes_down if proxy else 0
                seconds, _task = post_to_done(api, source)
                times[case].append(seconds)
                fetched[case].append((proxy.counts.bytes_down - before) if proxy else size)
        # The faulty endpoint needs an executor of its own.
        processes[1].terminate()
        processes[1].wait()
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "executor"], cwd=ROOT, env={**env, "AWS_URL": faulty.url}
            )
        )
        case = "S3, every connection cut"
        times[case], fetched[case] = [], []
        resumes = []
        for _ in range(args.runs):
            before = faulty.counts.bytes_down
            seconds, task = post_to_done(api, cases["S3 (moto)"][0])
            times[case].append(seconds)
            fetched[case].append(faulty.counts.bytes_down - before)
            resumes.append(task["resumes"])
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        clean.close()
        faulty.close()
        moto.stop()
        client = redis.Redis.from_url(settings.redis_url)
        for key in client.scan_iter(match=f"{name}:*"):
            client.delete(key)
        connection = broker.connect(settings.amqp_url)
        connection.channel().queue_delete(name)
        connection.channel().exchange_delete(name)
        connection.close()

    local = statistics.median(times["local disk"])
    print(f"\n{args.rows:,} rows x 40 columns, {size / 1e6:.0f} MB, {args.runs} runs each\n")
    print("| source | median POST -> done | min | max | x local | bytes fetched / size |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case, values in times.items():
        median = statistics.median(values)
        ratio = statistics.median(fetched[case]) / size
        print(
            f"| {case} | {median:.2f} s | {min(values):.2f} s | {max(values):.2f} s "
            f"| {median / local:.2f} | {ratio:.3f} |"
        )
    print(f"\nresumes per task with cuts: {resumes}")


if __name__ == "__main__":
    main()
