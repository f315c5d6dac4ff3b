"""One client's backlog against another client's few small tasks, fair queue against FIFO.

    python bench/fairness.py [--big-tasks 200] [--big-rows 300000] [--small-rows 20000]
                             [--rounds 3]

Each scenario runs on a stack of its own (bench/stack.py) with 2 executors and
ADMIN_TOKEN set; clients `a` and `b` get their tokens from POST /clients.

- idle: b submits 5 small tasks to an idle system.
- fair: a submits `--big-tasks` big tasks; 1 s later b submits 5 small ones.
- fifo: the same with DISPATCH_WINDOW far above the backlog, so every task enters
  RabbitMQ's queue at once and runs in arrival order: Colsum before the fair queue.
- weights: a (weight 3) and b (weight 1) each submit `--big-tasks / 2` big tasks at once.

The fair and FIFO scenarios run `--rounds` times each, alternating (fair, FIFO, FIFO,
fair, ...) so that a drift of the shared machine costs both alike; the table shows medians.
Prints b's median lead time (created -> finished, from the records) in each scenario and its
ratio to idle, a's total time (its first created to its last finished) as a ratio to FIFO,
and the shares of executor time under weights 3:1 while both clients had tasks waiting.
Goals (issue 13): fair b <= 2x idle, fair a <= 1.05x FIFO, shares within 10 % of 75/25.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import requests
from stack import ROOT, Stack, stack

from tests.csvfiles import write_numbers

DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "fairness.md"
ADMIN = "cs_bench_admin_token_0123456789abcdef"


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Client:
    def __init__(self, running: Stack, name: str, weight: int = 1) -> None:
        self.api = running.api
        answer = requests.post(
            f"{self.api}/clients",
            json={"name": name, "weight": weight},
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        )
        answer.raise_for_status()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['token']}"
        self.ids: list[str] = []

    def submit(self, path: str, count: int) -> None:
        for _ in range(count):
            answer = self.session.post(
                f"{self.api}/tasks", json={"storage": "local", "path": path}, timeout=30
            )
            answer.raise_for_status()
            self.ids.append(answer.json()["id"])

    def records(self) -> list[dict]:
        """Every task's record, once all are finished. Waits on the client's active count,
        one cheap request a second: polling every record would take CPU from the
        executors, and more of it while the other client's tasks are still running."""
        while self.session.get(f"{self.api}/tasks/active", timeout=30).json()["active"]:
            time.sleep(1)
        with ThreadPoolExecutor(8) as pool:
            tasks = list(pool.map(self._get, self.ids))
        failed = [task for task in tasks if task["status"] != "done"]
        if failed:
            raise SystemExit(f"a task did not end done: {failed[0]}")
        return tasks

    def _get(self, task_id: str) -> dict:
        return self.session.get(f"{self.api}/tasks/{task_id}", timeout=30).json()


def lead(tasks: list[dict]) -> float:
    return statistics.median(task["lead_seconds"] for task in tasks)


def span(tasks: list[dict]) -> float:
    return max(stamp(t["finished_at"]) for t in tasks) - min(stamp(t["created_at"]) for t in tasks)


def start(running: Stack) -> None:
    running.start_executor()
    running.start_executor()
    running.wait_for_executors()


def idle(small: str) -> float:
    with stack(DATA, ADMIN_TOKEN=ADMIN) as running:
        start(running)
        b = Client(running, "b")
        b.submit(small, 5)
        return lead(b.records())


def backlog(big: str, small: str, tasks: int, **env: str) -> tuple[float, float]:
    """b's median lead time and a's total time, b arriving 1 s after a's backlog."""
    with stack(DATA, ADMIN_TOKEN=ADMIN, **env) as running:
        start(running)
        a, b = Client(running, "a"), Client(running, "b")
        a.submit(big, tasks)
        time.sleep(1)
        b.submit(small, 5)
        return lead(b.records()), span(a.records())


def shares(big: str, tasks: int) -> float:
    """a's share (weight 3 against b's 1) of executor time while both had tasks waiting."""
    with stack(DATA, ADMIN_TOKEN=ADMIN) as running:
        start(running)
        a, b = Client(running, "a", weight=3), Client(running, "b", weight=1)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda client: client.submit(big, tasks), (a, b)))
        runs = {"a": a.records(), "b": b.records()}
    # Until the first client's last task started, both had work waiting.
    until = min(max(stamp(t["started_at"]) for t in tasks) for tasks in runs.values())
    since = max(min(stamp(t["created_at"]) for t in tasks) for tasks in runs.values())
    busy = {
        name: sum(
            max(0.0, min(stamp(t["finished_at"]), until) - max(stamp(t["started_at"]), since))
            for t in tasks
        )
        for name, tasks in runs.items()
    }
    return busy["a"] / (busy["a"] + busy["b"])


def file(rows: int) -> str:
    path = DATA / f"numbers-{rows}x40.csv"
    if not path.exists():
        print(f"writing {path.name} ...", flush=True)
        write_numbers(path, rows=rows, columns=40, seed=1, empty=0)
    return path.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big-tasks", type=int, default=200)
    parser.add_argument("--big-rows", type=int, default=300_000)
    parser.add_argument("--small-rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    big, small = file(args.big_rows), file(args.small_rows)
    size = Path(DATA / big).stat().st_size / 1e6
    print(
        f"a: {args.big_tasks} x {big} ({size:.0f} MB), b: 5 x {small}; 2 executors",
        flush=True,
    )
    idles, fair, fifo = [], [], []
    for round_ in range(args.rounds):
        idles.append(idle(small))
        print(f"idle done: b {idles[-1]:.2f} s", flush=True)
        order = ("fair", "fifo") if round_ % 2 == 0 else ("fifo", "fair")
        for kind in order:
            if kind == "fair":
                fair.append(backlog(big, small, args.big_tasks))
            else:
                fifo.append(backlog(big, small, args.big_tasks, DISPATCH_WINDOW="100000"))
            b_lead, a_total = (fair if kind == "fair" else fifo)[-1]
            print(f"{kind} done: b {b_lead:.2f} s, a {a_total:.1f} s", flush=True)
    b_idle = statistics.median(idles)
    b_fair, a_fair = (statistics.median(run[i] for run in fair) for i in (0, 1))
    b_fifo, a_fifo = (statistics.median(run[i] for run in fifo) for i in (0, 1))
    share = shares(big, args.big_tasks // 2)
    rows = [
        ("b's median lead, idle system", f"{b_idle:.2f} s", "1.00x idle", ""),
        ("b's median lead, fair queue", f"{b_fair:.2f} s", f"{b_fair / b_idle:.2f}x idle", "<= 2x"),
        ("b's median lead, FIFO", f"{b_fifo:.2f} s", f"{b_fifo / b_idle:.0f}x idle", ""),
        ("a's total, fair queue", f"{a_fair:.1f} s", f"{a_fair / a_fifo:.3f}x FIFO", "<= 1.05x"),
        ("a's total, FIFO", f"{a_fifo:.1f} s", "1.000x FIFO", ""),
        ("weights 3:1, a's share", f"{share:.1%}", f"{share / 0.75:.3f}x of 75 %", "0.9-1.1x"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    header = ("measure", "value", "ratio", "goal")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
        for row in (header, tuple("-" * w for w in widths), *rows)
    ]
    print()
    print("\n".join(lines))
    setup = f"a: {args.big_tasks} x {big}, b: 5 x {small}, 2 executors, {args.rounds} rounds"
    RESULTS.write_text(f"# bench/fairness.py, {time.strftime('%Y-%m-%d')}\n\n{setup}\n\n")
    with RESULTS.open("a") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
