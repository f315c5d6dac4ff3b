"""Prometheus metrics of one executor, served on a port of its own (EXECUTOR_METRICS_PORT;
0 takes a free one, shown on GET /executors)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

TASKS = Counter("colsum_executor_tasks_total", "Tasks finished, by outcome", ["outcome"])
DURATION = Histogram(
    "colsum_executor_task_seconds",
    "Time from claim to outcome",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
)
BYTES = Histogram(
    "colsum_executor_task_bytes",
    "Bytes read per task",
    buckets=(1e3, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10),
)
ROWS = Counter("colsum_executor_rows_total", "Rows summed; rows/s is its rate")
RETRIES = Counter("colsum_executor_storage_retries_total", "Failed storage reads retried")
RESUMES = Counter("colsum_executor_storage_resumes_total", "Broken streams continued")


def serve(port: int) -> int:
    """Serve /metrics on `port` and return the port in use. prometheus-client answers on a
    daemon thread of its own: scrapes must not wait for the task loop."""
    server, _thread = start_http_server(port, addr="0.0.0.0")
    return server.server_port


def record(outcome: str, seconds: float | None, stats) -> None:
    """Once per task: each update takes a lock, so what is zero is not counted."""
    TASKS.labels(outcome).inc()
    if seconds is not None:
        DURATION.observe(seconds)
    BYTES.observe(stats.bytes_read)
    ROWS.inc(stats.rows_read)
    if stats.attempts > 1:
        RETRIES.inc(stats.attempts - 1)
    if stats.resumes:
        RESUMES.inc(stats.resumes)
