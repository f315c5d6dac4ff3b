"""Checking a request against swagger.yaml: openapi-core beside the validators compiled from
the same spec (backend/validation.py), on the same requests, in one run.

    python bench/validation.py [--rounds 5] [--calls 300]

Each request is built once in the backend's own Flask app (no Redis or RabbitMQ is
touched), then checked `--calls` times by each way, in `--rounds` interleaved rounds;
prints the median time a check and the ratio, and saves them to bench/validation.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from flask import Request, request
from stack import ROOT

from backend import create_app, validation
from colsum.settings import Settings

TASK = "/tasks/0123456789abcdef0123456789abcdef"
REQUESTS = {
    "GET /tasks/<id>": {"path": TASK},
    "GET /tasks/<id>?wait=30": {"path": TASK, "query_string": "wait=30"},
    "GET /tasks?status=done&limit=10": {"path": "/tasks", "query_string": "status=done&limit=10"},
    "POST /tasks (local)": {
        "path": "/tasks",
        "method": "POST",
        "json": {"storage": "local", "path": "data/a.csv"},
    },
    "POST /tasks (S3, options)": {
        "path": "/tasks",
        "method": "POST",
        "json": {
            "storage": "s3",
            "bucket": "reports",
            "key": "k/a.csv",
            "header": True,
            "delimiter": ";",
            "priority": "high",
        },
    },
}


def openapi_core(checked: Request) -> None:
    """What validation.check does with a request the compiled validators decline."""
    wrapped = validation._OpenAPIRequest(checked)
    errors = list(validation._REQUEST.iter_errors(wrapped))
    errors += validation.unknown_parameters(wrapped.path_pattern, wrapped.method, checked.args)
    assert not errors, errors


def compiled(checked: Request) -> None:
    assert validation.OPERATIONS[validation._route(checked)].accepts(checked)


def per_call(check: Callable[[Request], None], checked: Request, calls: int) -> float:
    """Microseconds a call."""
    started = time.perf_counter()
    for _ in range(calls):
        check(checked)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    app = create_app(Settings.from_env())
    lines = [
        f"# Request checks: median of {args.rounds} rounds of {args.calls} calls, one run",
        "",
        "| request | openapi-core | compiled validators | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for name, spec in REQUESTS.items():
        with app.test_request_context(**spec):
            checked = request._get_current_object()
            checked.get_json(silent=True)  # parsed once, as the view has by the time it checks
            slow, fast = [], []
            for _ in range(args.rounds):
                slow.append(per_call(openapi_core, checked, args.calls))
                fast.append(per_call(compiled, checked, args.calls))
        slow_us, fast_us = statistics.median(slow), statistics.median(fast)
        ratio = slow_us / fast_us
        lines.append(f"| {name} | {slow_us:,.0f} us | {fast_us:,.1f} us | {ratio:.0f}x |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (ROOT / "bench" / "validation.md").write_text(text)


if __name__ == "__main__":
    main()
