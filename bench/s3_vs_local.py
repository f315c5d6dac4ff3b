"""POST -> done for one file read from local disk, from S3 (moto), and from S3 through a
proxy that cuts a third of its responses mid-body, or all of them. In one run.

    python bench/s3_vs_local.py [--rows 3000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stack import ROOT, free_port, stack

from colsum.s3client import make_client
from colsum.settings import Settings
from tests.csvfiles import write_numbers
from tests.faultproxy import FaultProxy, Faults

DATA = ROOT / "bench" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"numbers-{args.rows}x40.csv"
    if not path.exists():
        print(f"generating {path.name} ...", flush=True)
        write_numbers(path, rows=args.rows, columns=40, seed=1, empty=0)
    size = path.stat().st_size

    # moto in a process of its own, so that it does not share this one's GIL with the proxies.
    moto_port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2)
    moto_url = f"http://127.0.0.1:{moto_port}"
    s3 = make_client(Settings(aws_url=moto_url, aws_id="bench", aws_secret="bench"))
    s3.create_bucket(Bucket="bench")
    s3.upload_file(str(path), "bench", path.name)
    # A third of the responses cut within their first 500 MB; and every response cut
    # within its first 200 MB, about five resumes per GB.
    third = FaultProxy(moto_port, Faults(cut=1 / 3, cut_within=500_000_000, seed=5))
    faulty = FaultProxy(moto_port, Faults(cut=1.0, cut_within=200_000_000, seed=5))
    local = {"storage": "local", "path": path.name}
    remote = {"storage": "s3", "bucket": "bench", "key": path.name}
    times: dict[str, list[float]] = {}
    fetched: dict[str, list[int]] = {}
    resumes: dict[str, list[int]] = {}
    try:
        with stack(DATA, AWS_ID="bench", AWS_SECRET="bench") as running:
            # One executor at a time: the S3 endpoint is a setting of the process.
            proxies = (
                ("S3 (moto)", None),
                ("S3, a third of responses cut", third),
                ("S3, every response cut", faulty),
            )
            for label, proxy in proxies:
                running.start_executor(AWS_URL=proxy.url if proxy else moto_url)
                cases = [(label, remote, proxy)]
                if proxy is None:  # local disk in the same rounds, as the peer
                    cases.insert(0, ("local disk", local, None))
                for _ in range(args.runs):
                    for case, source, through in cases:
                        before = through.counts.bytes_down if through else 0
                        seconds, task = running.post_to_done(source)
                        times.setdefault(case, []).append(seconds)
                        fetched.setdefault(case, []).append(
                            through.counts.bytes_down - before if through else task["bytes_read"]
                        )
                        if through is not None:
                            resumes.setdefault(case, []).append(task["resumes"])
                running.stop_executors()
        for _ in range(args.runs):  # the peer of the S3 rows: downloading alone, no sum
            started = time.perf_counter()
            body = s3.get_object(Bucket="bench", Key=path.name)["Body"]
            while body.read(8 << 20):
                pass
            times.setdefault("boto3 download alone (no sum)", []).append(
                time.perf_counter() - started
            )
            fetched.setdefault("boto3 download alone (no sum)", []).append(size)
    finally:
        for proxy in (third, faulty):
            proxy.close()
        moto.terminate()

    local_median = statistics.median(times["local disk"])
    lines = [
        f"# S3 against local disk: {args.rows:,} rows x 40 columns, {size / 1e6:.0f} MB, "
        f"{args.runs} runs each, one run",
        "",
        "| source | median POST -> done | min | max | x local | bytes fetched / size |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for case, values in times.items():
        median = statistics.median(values)
        ratio = statistics.median(fetched[case]) / size
        lines.append(
            f"| {case} | {median:.2f} s | {min(values):.2f} s | {max(values):.2f} s "
            f"| {median / local_median:.2f} | {ratio:.3f} |"
        )
    lines.append("")
    lines += [f"Resumes per task, {case}: {counts}" for case, counts in resumes.items()]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (ROOT / "bench" / "s3.md").write_text(text)


if __name__ == "__main__":
    main()
