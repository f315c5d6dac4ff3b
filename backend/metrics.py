"""Prometheus metrics of the backend, at /metrics.

gunicorn runs several worker processes, so counters use prometheus-client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR, set by `python -m backend`); the task counts and the queue
depth are read from Redis and RabbitMQ when scraped.
"""

from __future__ import annotations

import os

from flask import Blueprint, Flask, Response, abort, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from backend import auth
from backend.services import services
from colsum.errors import BrokerUnavailable, StoreUnavailable

blueprint = Blueprint("metrics", __name__)

REQUESTS = Counter(
    "colsum_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
TASKS_CREATED = Counter("colsum_tasks_created_total", "Tasks accepted with 202")
# A label takes only these methods: any client may send any method, and each label value
# would be a series of its own, kept for ever.
METHODS = frozenset({"GET", "POST", "DELETE", "HEAD", "OPTIONS", "PUT", "PATCH"})


class _Live:
    """Gauges read at scrape time, so that every worker process reports the same."""

    def collect(self):
        found = services()
        try:
            counts = found.store.counts()
        except StoreUnavailable:
            counts = None
        if counts is not None:
            for name in ("active", "queued", "running"):
                yield GaugeMetricFamily(f"colsum_tasks_{name}", f"Tasks {name}", counts[name])
        try:
            backlogs = found.store.backlogs()
        except StoreUnavailable:
            backlogs = None
        if backlogs is not None:
            # What waits for the executors in all: the signal to autoscale them on.
            backlog = GaugeMetricFamily(
                "colsum_backlog_tasks",
                "Queued tasks waiting in their client's backlog, not yet in the queue",
                labels=["client"],
            )
            for client, waiting in backlogs.items():
                backlog.add_metric([client], waiting)
            yield backlog
        try:
            depth = found.publisher.queue_depth()
        except BrokerUnavailable:
            return
        yield GaugeMetricFamily("colsum_queue_depth", "Messages ready in the task queue", depth)


@blueprint.get("/metrics")
def metrics():
    # Counts of every client's tasks: the operator's, so the admin token's (Prometheus
    # sends it with `authorization: {credentials: ...}` in its scrape config).
    if not auth.is_admin():
        abort(403, "/metrics needs the admin token")
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:  # a single process (the tests' app): its own counters
        registry.register(REGISTRY)
    registry.register(_Live())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def register(app: Flask) -> None:
    app.register_blueprint(blueprint)

    @app.after_request
    def count(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(method, route, str(response.status_code)).inc()
        if route == "/tasks" and request.method == "POST" and response.status_code == 202:
            TASKS_CREATED.inc()
        return response
