"""The `/tasks` resource."""

from __future__ import annotations

from flask import Blueprint, abort, request

from backend.services import services
from colsum.errors import BrokerUnavailable
from colsum.task import Task, TaskRequest

blueprint = Blueprint("tasks", __name__, url_prefix="/tasks")


@blueprint.post("")
def create():
    if not request.is_json:
        abort(415, "send the task as JSON with 'Content-Type: application/json'")
    body = request.get_json(silent=True)
    if body is None:
        abort(400, "the request body is not valid JSON")
    task = Task.from_request(TaskRequest.from_body(body))

    found = services()
    found.store.create(task)
    try:
        found.publisher.publish(task.id)
    except BrokerUnavailable:
        # The client gets no id, so nobody would ever look at this record again.
        found.store.discard(task.id)
        raise
    # Had this process died before here, the sweeper would publish the task again.
    found.store.published(task.id)
    return task.to_json(), 202, {"Location": f"/tasks/{task.id}"}


@blueprint.get("/active")
def active():
    return services().store.counts()


@blueprint.get("/<task_id>")
def show(task_id: str):
    task = services().store.get(task_id)
    if task is None:
        abort(404, f"no task with id {task_id!r}")
    return task.to_json()
