"""Health for orchestrators, and the executors an operator can see."""

from __future__ import annotations

from flask import Blueprint, request

from backend import auth, validation
from backend.services import services
from colsum.errors import BrokerUnavailable, StoreUnavailable
from colsum.store import EXECUTOR_TTL

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():
    """The process answers: enough for a liveness probe, which must not fail on a
    dependency (restarting the backend would not bring Redis back)."""
    return {"status": "ok"}


@blueprint.get("/readyz")
def readyz():
    """Redis and RabbitMQ answer: ready to accept tasks."""
    found = services()
    checks = {}
    for name, ping, error_type in (
        ("redis", found.store.ping, StoreUnavailable),
        ("rabbitmq", found.publisher.ping, BrokerUnavailable),
    ):
        try:
            ping()
            checks[name] = "ok"
        except error_type as error:
            checks[name] = str(error)
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ok" if ready else "unavailable", **checks}, 200 if ready else 503


@blueprint.get("/executors")
def executors():
    validation.check(request)
    return {"executors": visible_executors()}


def visible_executors() -> list[dict[str, object]]:
    """The live executors; to a client, another client's task in hand shows as `null`,
    so that no task id of theirs leaks (the executor still shows busy by its counters)."""
    store = services().store
    found = [executor_json(r) for r in store.live_executors(EXECUTOR_TTL)]
    if not auth.is_admin():
        for executor in found:
            task_id = executor["current_task"]
            try:
                task = store.get(str(task_id)) if task_id else None
            except (KeyError, ValueError):  # a broken record: nobody's to show
                task = None
            if task is None or task.client != auth.current_client():
                executor["current_task"] = None
    return found


def executor_json(record: dict[str, str]) -> dict[str, object]:
    """An executor's registry hash with its counters as numbers, as /executors and the
    dashboard show it."""
    return {
        "id": record.get("id"),
        "host": record.get("host"),
        "pid": int(record.get("pid") or 0),
        "started_at": record.get("started_at"),
        "current_task": record.get("current_task") or None,
        "tasks_done": int(record.get("tasks_done") or 0),
        "tasks_failed": int(record.get("tasks_failed") or 0),
        "last_heartbeat": record.get("last_heartbeat"),
        "metrics_port": int(record["metrics_port"]) if record.get("metrics_port") else None,
    }
