"""Time tasks through a running Colsum, from POST /tasks to status done.

    python bench/post_to_done.py [--url http://127.0.0.1:8000] [--runs 3] PATH

PATH is relative to the executors' DATA_DIR. Prints each run and the median.
"""

from __future__ import annotations

import argparse
import statistics
import time

import requests


def run_once(url: str, path: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = requests.post(f"{url}/tasks", json={"storage": "local", "path": path}, timeout=10)
    response.raise_for_status()
    location = f"{url}{response.headers['Location']}"
    while True:
        task = requests.get(location, timeout=10).json()
        if task["status"] in ("done", "failed"):
            return time.perf_counter() - started, task
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times = []
    for run in range(1, args.runs + 1):
        seconds, task = run_once(args.url, args.path)
        if task["status"] != "done":
            raise SystemExit(f"task failed: {task['error']}")
        times.append(seconds)
        print(f"run {run}: {seconds:.2f} s, {task['result']['rows']} rows")
    print(f"median POST -> done: {statistics.median(times):.2f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
