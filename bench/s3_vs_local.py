"""POST -> done for one file read from local disk, from S3 (moto), and from S3 through a
proxy that cuts every connection mid-body. Runs interleaved, in one run.

    python bench/s3_vs_local.py [--rows 3000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics

import boto3
from moto.server import ThreadedMotoServer
from stack import ROOT, free_port, stack

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
    # Every response is cut within its first 200 MB: about five resumes per GB.
    faulty = FaultProxy(moto_port, Faults(cut=1.0, cut_within=200_000_000, seed=5))
    local = {"storage": "local", "path": path.name}
    remote = {"storage": "s3", "bucket": "bench", "key": path.name}
    times: dict[str, list[float]] = {}
    fetched: dict[str, list[int]] = {}
    resumes: list[int] = []
    try:
        with stack(DATA, AWS_ID="bench", AWS_SECRET="bench") as running:
            # One executor at a time: the S3 endpoint is a setting of the process.
            for label, proxy in (("S3 (moto)", clean), ("S3, every response cut", faulty)):
                running.start_executor(AWS_URL=proxy.url)
                cases = [(label, remote, proxy)]
                if proxy is clean:  # local disk in the same rounds, as the peer
                    cases.insert(0, ("local disk", local, None))
                for _ in range(args.runs):
                    for case, source, through in cases:
                        before = through.counts.bytes_down if through else 0
                        seconds, task = running.post_to_done(source)
                        times.setdefault(case, []).append(seconds)
                        fetched.setdefault(case, []).append(
                            through.counts.bytes_down - before if through else size
                        )
                        if through is faulty:
                            resumes.append(task["resumes"])
                running.stop_executors()
    finally:
        clean.close()
        faulty.close()
        moto.stop()

    local_median = statistics.median(times["local disk"])
    print(f"\n{args.rows:,} rows x 40 columns, {size / 1e6:.0f} MB, {args.runs} runs each\n")
    print("| source | median POST -> done | min | max | x local | bytes fetched / size |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case, values in times.items():
        median = statistics.median(values)
        ratio = statistics.median(fetched[case]) / size
        print(
            f"| {case} | {median:.2f} s | {min(values):.2f} s | {max(values):.2f} s "
            f"| {median / local_median:.2f} | {ratio:.3f} |"
        )
    print(f"\nresumes per task with cuts: {resumes}")


if __name__ == "__main__":
    main()
