"""GET /tasks/<id> and /tasks/active under load, beside a bare Flask app, in one run.

    python bench/api.py [--rounds 3] [--seconds 10] [--connections 32]

wrk (Debian package wrk) runs -t2 -c`--connections` for `--seconds` against: Colsum's
GET /tasks/<id> of a done task, with the admin's token (no lookup, as in open mode) and
with its client's (looked up in Redis on every request), GET /tasks/active, and the bare
Flask + gunicorn app of bench/bare_flask.py answering the same record with one HGETALL
(same workers and threads).
The rounds are interleaved; prints medians of rps, p50, p99 and the server's CPU time a
request (its master and workers, from /proc: what other load on a shared machine moves
least), the ratios to the anchor, and saves them to bench/api.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import requests
from stack import ROOT, cpu_seconds, free_port, stack

from colsum.settings import Settings

DATA = ROOT / "bench" / "data"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
ADMIN_TOKEN = "bench-admin-token"
BARE = "bare Flask GET /tasks/<id> (HGETALL)"


def wrk(
    url: str, seconds: int, connections: int, server: int, token: str | None = None
) -> dict[str, float]:
    """rps, p50 and p99 in milliseconds, and the server's CPU microseconds per request:
    the cost of a request, which other load on the machine moves far less than rps."""
    before = cpu_seconds(server)
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", *auth, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    latency = {
        share: float(value) * UNITS[unit]
        for share, value, unit in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)\b", output)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise SystemExit(f"{url}: {errors[1]} responses that were not 2xx\n{output}")
    requests_done = int(re.search(r"(\d+) requests in", output)[1])
    cpu = (cpu_seconds(server) - before) / requests_done * 1e6
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"], "cpu": cpu}


def bare_app(prefix: str, settings: Settings) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(os.path.join(os.path.dirname(sys.executable), "gunicorn")),
            "-k",
            "gthread",
            "-w",
            str(settings.web_workers),
            "--threads",
            str(settings.web_threads),
            "-b",
            f"127.0.0.1:{port}",
            "bench.bare_flask:app",
        ],
        cwd=ROOT,
        env={**os.environ, "BARE_KEY_PREFIX": prefix},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(f"{url}/tasks/none", timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("the bare Flask app did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench/api.py needs wrk: apt-get install wrk")

    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "api.csv").write_text("a,b,c,d,e,f,g,h,i,j\n" + "1,2,3,4,5,6,7,8,9,10\n" * 3)
    settings = Settings.from_env()
    results: dict[str, list[dict[str, float]]] = {}
    with stack(DATA, ADMIN_TOKEN=ADMIN_TOKEN) as running:
        token = requests.post(
            f"{running.api}/clients",
            json={"name": "bench"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        ).json()["token"]
        running.start_executor()
        _, task = running.post_to_done({"storage": "local", "path": "api.csv"}, token)
        running.stop_executors()  # idle executors still beat: nothing else on the cores
        bare, bare_url = bare_app(running.env["REDIS_PREFIX"], settings)
        colsum, record = running.backend.pid, f"{running.api}/tasks/{task['id']}"
        targets = {
            "Colsum GET /tasks/<id>": (record, colsum, ADMIN_TOKEN),
            "Colsum GET /tasks/<id>, a client's token": (record, colsum, token),
            "Colsum GET /tasks/active": (f"{running.api}/tasks/active", colsum, ADMIN_TOKEN),
            BARE: (f"{bare_url}/tasks/{task['id']}", bare.pid, None),
        }
        try:
            for round_ in range(args.rounds):
                for name, (url, server, bearer) in targets.items():
                    run = wrk(url, args.seconds, args.connections, server, bearer)
                    results.setdefault(name, []).append(run)
                print(f"round {round_ + 1} of {args.rounds} done", flush=True)
        finally:
            bare.terminate()
            bare.wait()

    bare_runs = results[BARE]
    anchor = statistics.median(r["rps"] for r in bare_runs)
    anchor_cpu = statistics.median(r["cpu"] for r in bare_runs)
    lines = [
        f"# The API under load: wrk -t2 -c{args.connections} -d{args.seconds}s,"
        f" {args.rounds} interleaved rounds, medians",
        "",
        "| target | rps | p50 | p99 | x bare Flask | server CPU a request | x bare Flask's CPU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        lines.append(
            f"| {name} | {rps:,.0f} | {p50:.1f} ms | {p99:.1f} ms | {rps / anchor:.2f} "
            f"| {cpu:.0f} us | {anchor_cpu / cpu:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (ROOT / "bench" / "api.md").write_text(text)


if __name__ == "__main__":
    main()
