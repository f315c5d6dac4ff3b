"""The summing engine against the tools a data engineer would reach for, in one run.

    python bench/engines.py [--runs 5] [--rows 3000000] [--big-rows 30000000] [--e2e]

Three files of `--rows` rows x 40 columns (generated once, deterministically, into
bench/data/): plain numbers, the same fully quoted (QUOTE_ALL), and the same with CRLF line
ends and a UTF-8 BOM. Every engine runs `--runs` times on each, interleaved, each time in a
fresh process so that its peak RSS is its own, timed from its imports done (as in a
running service). Prints a table of median/min/max wall time,
MB/s, peak RSS and the ratio to Colsum's engine, checks that the exact engines agree to the
last digit, then the issue's goals as same-run ratios: Colsum against Polars' float parse,
quoted against plain, peak RSS at `--big-rows` rows (0: skip), a 100,000-column file, and
with --e2e POST -> done on a stack of its own against the engine alone. Saved to
bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from decimal import Decimal
from pathlib import Path

from stack import ROOT, in_fresh_process, stack

from tests.csvfiles import write_numbers

DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results.md"
COLUMNS = ["c10", "c20", "c30", "c40"]

# name: (exact?, description)
ENGINES = {
    "colsum": (True, "Colsum's engine (executor.summing), exact, any number of decimals"),
    "polars-float": (False, "Polars streaming scan_csv, Float64 sums"),
    "polars-decimal": (True, "Polars streaming, Decimal(38, 2) given in advance"),
    "duckdb-decimal": (True, "DuckDB read_csv, CAST to DECIMAL(38, 2)"),
    "csv-loop": (True, "Python csv module and Decimal, row by row"),
}
WIDE_COLUMNS = 100_000


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
    if name == "csv-loop":
        import csv

        with path.open(newline="") as text:
            reader = csv.reader(text)
            header = [name.removeprefix("\ufeff") for name in next(reader)]
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
    return in_fresh_process(__file__, name, str(path))


def prepare(name: str) -> None:
    """What a running service has done already, outside the timing: imports, and loading
    Colsum's compiled kernel (an executor does it at start-up)."""
    if name == "colsum":
        from executor import fastsum

        fastsum.warm()
    elif name.startswith("polars"):
        import polars  # noqa: F401
    elif name == "duckdb-decimal":
        import duckdb  # noqa: F401


def one(name: str, path: Path) -> None:
    prepare(name)
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
    if len(agree) != sum(ENGINES[n][0] for n in runs):
        lines.append("**Some exact engines disagree!**")
    return lines


def variants(rows: int) -> list[Path]:
    """The plain file, then its quoted and its CRLF + BOM copies, made once."""
    plain = DATA / f"numbers-{rows}x40.csv"
    quoted = DATA / f"quoted-{rows}x40.csv"
    crlf = DATA / f"crlf-bom-{rows}x40.csv"
    if not plain.exists():
        print(f"generating {plain.name} ...", flush=True)
        write_numbers(plain, rows=rows, columns=40, seed=1, empty=0)
    if not quoted.exists() or not crlf.exists():
        print(f"writing {quoted.name} and {crlf.name} ...", flush=True)
        with plain.open("rb") as source, quoted.open("wb") as q, crlf.open("wb") as c:
            c.write(b"\xef\xbb\xbf")
            while lines := source.readlines(8 << 20):
                c.write(b"".join(lines).replace(b"\n", b"\r\n"))
                q.write(b"".join(b'"' + line[:-1].replace(b",", b'","') + b'"\n' for line in lines))
    return [plain, quoted, crlf]


def repeated(plain: Path, times: int) -> Path:
    """The plain file's rows `times` over: a big file in seconds, not a long generation."""
    path = DATA / plain.name.replace("numbers-", f"numbers-x{times}-")
    if not path.exists():
        print(f"writing {path.name} ...", flush=True)
        with plain.open("rb") as source, path.open("wb") as out:
            out.write(source.readline())
            body = source.tell()
            for _ in range(times):
                source.seek(body)
                while block := source.read(8 << 20):
                    out.write(block)
    return path


def wide() -> Path:
    path = DATA / f"wide-300x{WIDE_COLUMNS}.csv"
    if not path.exists():
        write_numbers(path, rows=300, columns=WIDE_COLUMNS, seed=2, empty=0)
    return path


def median_of(results: list[dict]) -> float:
    return statistics.median(r["seconds"] for r in results)


def mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--big-rows", type=int, default=30_000_000, help="0: skip")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--e2e", action="store_true", help="also time POST -> done")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one[0], Path(args.one[1]))
        return

    DATA.mkdir(parents=True, exist_ok=True)
    engines = ["colsum", *(name for name in args.engines if name != "colsum")]
    report = ["# Summing engines, measured in one run", ""]
    report += [f"- **{name}**: {ENGINES[name][1]}" for name in engines] + [""]
    files = variants(args.rows)
    runs: dict[Path, dict[str, list[dict]]] = {}
    for path in files:
        runs[path] = {name: [] for name in engines}
        for run in range(args.runs):
            for name in engines:
                runs[path][name].append(measure(name, path))
            print(f"{path.name}: round {run + 1} of {args.runs} done", flush=True)
        report += [*table(path, runs[path]), ""]

    plain, quoted, crlf = files
    ours = {path: median_of(runs[path]["colsum"]) for path in files}
    goals = ["### Goals, as ratios in this run", ""]
    if "polars-float" in engines:
        ratio = ours[plain] / median_of(runs[plain]["polars-float"])
        goals.append(f"- Colsum / Polars float, plain file: {ratio:.2f} (goal <= 0.8)")
    goals += [
        f"- Colsum quoted / Colsum plain: {ours[quoted] / ours[plain]:.2f} (goal <= 1.5;"
        f" the quoted file has {mb(quoted) / mb(plain):.2f}x the bytes)",
        f"- Colsum CRLF + BOM / Colsum plain: {ours[crlf] / ours[plain]:.2f}",
    ]
    if args.big_rows:
        big = repeated(plain, max(1, args.big_rows // args.rows))
        big_runs = [measure("colsum", big) for _ in range(3)]
        goals.append(
            f"- Colsum peak RSS: {max(r['rss_mib'] for r in runs[plain]['colsum']):.0f} MiB at"
            f" {args.rows:,} rows, {max(r['rss_mib'] for r in big_runs):.0f} MiB at"
            f" {args.big_rows:,} rows ({mb(big) / 1e3:.1f} GB, median {median_of(big_runs):.2f} s,"
            f" {mb(big) / median_of(big_runs):.0f} MB/s) (goal <= 256 MiB, flat)"
        )
    broad = wide()
    seconds = median_of([measure("colsum", broad) for _ in range(3)])
    goals.append(
        f"- Colsum on {WIDE_COLUMNS:,} columns x 300 rows ({mb(broad):.0f} MB): {seconds:.2f} s,"
        f" {mb(broad) / seconds:.0f} MB/s; at 40 columns {mb(plain) / ours[plain]:.0f} MB/s"
    )
    if args.e2e:
        # Interleaved with runs of the engine alone, so that both see the same machine.
        alone, times = [], []
        with stack(DATA) as running:
            running.start_executor()
            running.post_to_done({"storage": "local", "path": plain.name})  # a warm executor
            for _ in range(args.runs):
                alone.append(measure("colsum", plain)["seconds"])
                times.append(running.post_to_done({"storage": "local", "path": plain.name})[0])
        median, engine = statistics.median(times), statistics.median(alone)
        goals.append(
            f"- POST -> done, {plain.name} on local storage: median {median:.2f} s"
            f" (min {min(times):.2f}, max {max(times):.2f}); the engine alone in the same rounds"
            f" {engine:.2f} s; ratio {median / engine:.2f} (goal <= 1.05)"
        )
    report += [*goals, ""]
    text = "\n".join(report)
    print("\n" + text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
