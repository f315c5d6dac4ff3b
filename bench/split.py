"""One big file on one executor against two, each limited to one core, in one run.

    python bench/split.py [--runs 3] [--rows 3000000]

The file holds `--rows` rows x 40 columns: bench/engines.py's plain file of a tenth of them
repeated ten times (generated once into bench/data/: a tenth takes minutes to write).
Three stacks of their own (bench/stack.py) run side by side, every executor limited to one
core (EXECUTOR_THREADS=1, and pinned to a CPU of its own, its reading thread too): one
executor with SPLIT_SIZE=0 (one stream), one executor with the default SPLIT_SIZE (parts,
one after the other), and two executors with the default SPLIT_SIZE (parts, side by side).
Each round times POST -> done once on each, interleaved, so that all see the same machine;
prints a table of medians and the issue's goal as a same-run ratio (two executors <= 0.6x
one), and saves it to bench/split.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
from pathlib import Path

from engines import DATA, mb, repeated, variants
from stack import ROOT, stack

from colsum.settings import Settings

RESULTS = ROOT / "bench" / "split.md"
CPUS = os.cpu_count() or 1
SPLIT_SIZE = Settings().split_size
# name: (executors, SPLIT_SIZE)
SETUPS = {
    "1 executor, one stream (SPLIT_SIZE=0)": (1, 0),
    f"1 executor, parts (SPLIT_SIZE={SPLIT_SIZE})": (1, SPLIT_SIZE),
    f"2 executors, parts (SPLIT_SIZE={SPLIT_SIZE})": (2, SPLIT_SIZE),
}


def warm_file(plain: Path) -> Path:
    """The first megabyte of rows: a task that warms an executor without splitting."""
    path = DATA / "split-warm.csv"
    if not path.exists():
        with plain.open("rb") as source:
            path.write_bytes(b"".join(source.readlines(1 << 20)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3_000_000)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    plain = repeated(variants(args.rows // 10)[0], 10)
    warm = warm_file(plain)
    times: dict[str, list[float]] = {name: [] for name in SETUPS}
    parts: dict[str, int | None] = {}
    with contextlib.ExitStack() as stacks:
        running = {}
        for name, (executors, split_size) in SETUPS.items():
            env = {"EXECUTOR_THREADS": "1", "SPLIT_SIZE": str(split_size), "WEB_CONCURRENCY": "1"}
            running[name] = stacks.enter_context(stack(DATA, **env))
            for cpu in range(executors):
                running[name].start_executor({cpu % CPUS})
            for _ in range(executors):
                running[name].post_to_done({"storage": "local", "path": warm.name})
        for run in range(args.runs):
            for name in SETUPS:
                seconds, task = running[name].post_to_done({"storage": "local", "path": plain.name})
                times[name].append(seconds)
                parts[name] = (task.get("parts") or {}).get("total")
            print(f"round {run + 1} of {args.runs} done", flush=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    one, split_one, two = list(SETUPS)
    lines = [
        "# One file split across executors (issue 16, part 1), measured in one run",
        "",
        f"{plain.name} ({mb(plain):.0f} MB), local storage, every executor with"
        f" EXECUTOR_THREADS=1 and pinned to one CPU of {CPUS} (the first executor of each"
        f" setup to CPU 0, the second to CPU 1); POST -> done, median of {args.runs} runs.",
        "",
        "| setup | parts | median s | min s | max s | MB/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, values in times.items():
        lines.append(
            f"| {name} | {parts[name] or '-'} | {medians[name]:.2f} | {min(values):.2f}"
            f" | {max(values):.2f} | {mb(plain) / medians[name]:.0f} |"
        )
    lines += [
        "",
        f"- 2 executors / 1 executor, both with parts: {medians[two] / medians[split_one]:.2f}"
        " (goal <= 0.6)",
        f"- 2 executors with parts / 1 executor in one stream: {medians[two] / medians[one]:.2f}",
        f"- 1 executor, parts / one stream (the cost of splitting):"
        f" {medians[split_one] / medians[one]:.2f}",
        "",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
