"""The summing engine against the tools a data engineer would reach for, in one run.

    python bench/engines.py [--runs 5] [--rows 300000 3000000] [--e2e]

For each file (generated once, deterministically, into bench/data/), every engine runs
`--runs` times, interleaved, each time in a fresh process so that its peak RSS is its own.
Prints a table of median/min/max wall time, MB/s, peak RSS and the ratio to Colsum's
engine, checks that the exact engines agree to the last digit, and saves the table to
bench/results.md. With --e2e it also times POST -> done on a stack of its own for the
largest file, as a ratio to the engine alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from stack import ROOT, stack

from tests.csvfiles import write_numbers

DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results.md"
COLUMNS = ["c10", "c20", "c30", "c40"]

# name: (exact?, description)
ENGINES = {
    "colsum": (True, "Colsum's engine (executor.summing)"),
    "polars-float": (False, "Polars streaming scan_csv, Float64 sums"),
    "polars-decimal": (True, "Polars streaming, Decimal(38, 2) given in advance"),
    "duckdb-decimal": (True, "DuckDB read_csv, CAST to DECIMAL(38, 2)"),
    "pandas": (False, "pandas read_csv in chunks, Float64 sums"),
    "csv-loop": (True, "Python csv module and Decimal, row by row"),
}


def run_engine(name: str, path: Path) -> list:
    """The column sums by one engine, as strings (floats as repr)."""
    if name == "colsum":
        from executor.summing import sum_columns

        with path.open("rb") as stream:
            return [str(column.sum) for column in sum_columns(stream).columns]
    if name.startswith("polars"):
        import polars as pl

        overrides = {c: pl.Decimal(38, 2) for c in COLUMNS} if name == "polars-decimal" else {}
        frame = (
            pl.scan_csv(path, schema_overrides=overrides)
            .select(pl.col(c).sum() for c in COLUMNS)
            .collect(engine="streaming")
        )
        return [str(value) for value in frame.row(0)]
    if name == "duckdb-decimal":
        import duckdb

        sums = ", ".join(f"sum(CAST({c} AS DECIMAL(38, 2)))" for c in COLUMNS)
        query = f"SELECT {sums} FROM read_csv('{path}', header = true, all_varchar = true)"
        return [str(value) for value in duckdb.sql(query).fetchall()[0]]
    if name == "pandas":
        import pandas as pd

        totals = [0.0] * len(COLUMNS)
        for frame in pd.read_csv(path, usecols=COLUMNS, chunksize=500_000):
            totals = [t + frame[c].sum() for t, c in zip(totals, COLUMNS, strict=True)]
        return [repr(t) for t in totals]
    if name == "csv-loop":
        import csv

        with path.open(newline="") as text:
            reader = csv.reader(text)
            header = next(reader)
            indexes = [header.index(c) for c in COLUMNS]
            totals = [Decimal(0)] * len(indexes)
            for row in reader:
                for slot, i in enumerate(indexes):
                    if row[i]:
                        totals[slot] += Decimal(row[i])
        return [str(t) for t in totals]
    raise SystemExit(f"unknown engine {name}")


def measure(name: str, path: Path) -> dict:
    """Run one engine in a fresh process: its time, its peak RSS, its sums."""
    output = subprocess.run(
        [sys.executable, __file__, "--one", name, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return json.loads(output)


def one(name: str, path: Path) -> None:
    started = time.perf_counter()
    sums = run_engine(name, path)
    seconds = time.perf_counter() - started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mib": rss_mib, "sums": sums}))


def same(a: list[str], b: list[str]) -> bool:
    return [Decimal(x) for x in a] == [Decimal(x) for x in b]


def table(path: Path, runs: dict[str, list[dict]]) -> list[str]:
    size_mb = path.stat().st_size / 1e6
    ours = statistics.median(r["seconds"] for r in runs["colsum"])
    lines = [
        f"### {path.name} ({size_mb:.0f} MB), {len(runs['colsum'])} runs each",
        "",
        "| engine | exact | median | min | max | MB/s | peak RSS | x Colsum |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, results in runs.items():
        seconds = [r["seconds"] for r in results]
        median = statistics.median(seconds)
        rss = max(r["rss_mib"] for r in results)
        exact = "yes" if ENGINES[name][0] else "no"
        lines.append(
            f"| {name} | {exact} | {median:.2f} s | {min(seconds):.2f} s | {max(seconds):.2f} s "
            f"| {size_mb / median:.0f} | {rss:.0f} MiB | {median / ours:.2f} |"
        )
    reference = runs["colsum"][0]["sums"]
    agree = [n for n in runs if ENGINES[n][0] and same(runs[n][0]["sums"], reference)]
    lines += ["", f"Exact engines agreeing with Colsum to the last digit: {', '.join(agree)}."]
    if len(agree) != sum(exact for exact, _ in ENGINES.values()):
        lines.append("**Some exact engines disagree!**")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, nargs="+", default=[300_000, 3_000_000])
    parser.add_argument("--e2e", action="store_true", help="also time POST -> done")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one[0], Path(args.one[1]))
        return

    DATA.mkdir(parents=True, exist_ok=True)
    report = ["# Summing engines, measured in one run", ""]
    report += [f"- **{name}**: {text}" for name, (_, text) in ENGINES.items()] + [""]
    engine_medians = {}
    for rows in args.rows:
        path = DATA / f"numbers-{rows}x40.csv"
        if not path.exists():
            print(f"generating {path.name} ...", flush=True)
            write_numbers(path, rows=rows, columns=40, seed=1, empty=0)
        runs: dict[str, list[dict]] = {name: [] for name in ENGINES}
        for run in range(args.runs):
            for name in ENGINES:
                runs[name].append(measure(name, path))
            print(f"{path.name}: round {run + 1} of {args.runs} done", flush=True)
        engine_medians[path] = statistics.median(r["seconds"] for r in runs["colsum"])
        report += [*table(path, runs), ""]

    if args.e2e:
        path = DATA / f"numbers-{max(args.rows)}x40.csv"
        with stack(DATA) as running:
            running.start_executor()
            times = [
                running.post_to_done({"storage": "local", "path": path.name})[0]
                for _ in range(args.runs)
            ]
        median = statistics.median(times)
        report += [
            f"### End to end, {path.name} on local storage ({args.runs} runs)",
            "",
            f"POST -> done: median {median:.2f} s (min {min(times):.2f}, max {max(times):.2f});"
            f" engine alone {engine_medians[path]:.2f} s;"
            f" ratio {median / engine_medians[path]:.2f}.",
            "",
        ]
    text = "\n".join(report)
    print("\n" + text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
