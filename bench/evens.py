"""sum_even against numpy on the same file of integers, in one run.

    python bench/evens.py [--numbers 100000000] [--runs 3]

A file of `--numbers` integers (-10**9 < n < 10**9, ten a line; about 1 GB for the
default) is generated once into bench/data/. Colsum's engine (executor.evens) and
numpy.fromfile(sep=" ") then a vectorised sum of the even ones run `--runs` times each,
interleaved, each in a fresh process timed after its imports; prints the medians and
the ratio, and checks the two agree. Saved to bench/evens.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from stack import ROOT, in_fresh_process

DATA = ROOT / "bench" / "data"


def generate(path: Path, numbers: int) -> None:
    rng = np.random.default_rng(7)
    with path.open("w") as out:
        for start in range(0, numbers, 1_000_000):
            block = rng.integers(-(10**9) + 1, 10**9, min(1_000_000, numbers - start))
            lines = block.reshape(-1, 10) if len(block) % 10 == 0 else block.reshape(-1, 1)
            out.write("\n".join(" ".join(map(str, line)) for line in lines.tolist()) + "\n")


def one(engine: str, path: Path) -> None:
    if engine == "colsum":
        from executor import evens, fastsum

        fastsum.warm()
        started = time.perf_counter()
        with path.open("rb") as stream:
            found = evens.sum_even(stream)
        answer = [found.count, found.even_count, found.sum]
    else:
        started = time.perf_counter()
        values = np.fromfile(path, dtype=np.int64, sep=" ")
        even = values[values % 2 == 0]
        answer = [len(values), len(even), int(even.sum())]
    print(json.dumps({"seconds": time.perf_counter() - started, "answer": answer}))


def measure(engine: str, path: Path) -> dict:
    return in_fresh_process(__file__, engine, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=100_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one[0], Path(args.one[1]))
        return
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"integers-{args.numbers}.txt"
    if not path.exists():
        print(f"generating {path.name} ...", flush=True)
        generate(path, args.numbers)
    runs: dict[str, list[dict]] = {"colsum": [], "numpy": []}
    for _ in range(args.runs):
        for engine in runs:
            runs[engine].append(measure(engine, path))
    size = path.stat().st_size / 1e6
    ours = statistics.median(r["seconds"] for r in runs["colsum"])
    lines = [
        f"# sum_even: {args.numbers:,} integers ({size:.0f} MB), {args.runs} runs each",
        "",
        "| engine | median | MB/s | x Colsum |",
        "| --- | --- | --- | --- |",
    ]
    for engine, results in runs.items():
        median = statistics.median(r["seconds"] for r in results)
        lines.append(f"| {engine} | {median:.2f} s | {size / median:.0f} | {median / ours:.2f} |")
    agree = runs["colsum"][0]["answer"] == runs["numpy"][0]["answer"]
    lines += ["", f"Same count, even count and sum: {'yes' if agree else 'NO'}."]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (ROOT / "bench" / "evens.md").write_text(text)


if __name__ == "__main__":
    main()
