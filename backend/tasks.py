"""The `/tasks` resource."""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, request

from backend import uploads
from backend.services import services
from colsum.errors import BrokerUnavailable
from colsum.task import Task, TaskRequest, TaskStatus

blueprint = Blueprint("tasks", __name__, url_prefix="/tasks")

MAX_WAIT = 60.0  # seconds a long poll may last
UPLOAD_LIMIT = 1 << 50  # uploads are bounded by the disk, not by MAX_CONTENT_LENGTH
MAX_LIMIT = 100


@blueprint.post("")
def create():
    options = _query_options()
    if request.mimetype == "text/csv":
        return upload(options)
    if not request.is_json:
        abort(
            415,
            "send the task as JSON with 'Content-Type: application/json', "
            "or a CSV file with 'Content-Type: text/csv'",
        )
    body = request.get_json(silent=True)
    if body is None:
        abort(400, "the request body is not valid JSON")
    if isinstance(body, dict):
        body = {**options, **body}  # fields in the body win over the query's
    return enqueue(Task.from_request(TaskRequest.from_body(body)))


def upload(options: dict[str, object]):
    """The body is the CSV; `header` and `delimiter` come as query parameters."""
    checked = _checked(options)
    request.max_content_length = UPLOAD_LIMIT
    task_id = uuid.uuid4().hex
    source = uploads.store(task_id, request.stream, services().settings)
    task = Task(id=task_id, source=source, header=checked.header, delimiter=checked.delimiter)
    return enqueue(task)


def _query_options() -> dict[str, object]:
    options: dict[str, object] = {}
    if "header" in request.args:
        header = request.args["header"]
        if header not in ("true", "false"):
            abort(400, "'header' must be true or false")
        options["header"] = header == "true"
    if "delimiter" in request.args:
        options["delimiter"] = request.args["delimiter"]
    _checked(options)  # a bad one is refused even where the body gives its own
    return options


def _checked(options: dict[str, object]) -> TaskRequest:
    return TaskRequest.from_body({"storage": "local", "path": "upload.csv", **options})


def enqueue(task: Task):
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


@blueprint.get("")
def index():
    status = request.args.get("status")
    if status is not None and status not in set(TaskStatus):
        abort(400, f"'status' must be one of {', '.join(TaskStatus)}")
    limit = _number("limit", default=20, low=1, high=MAX_LIMIT, kind=int)
    cursor = request.args.get("cursor")
    if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
        abort(400, "'cursor' must be the next_cursor of a previous page")
    page = services().store.page(TaskStatus(status) if status else None, limit, cursor)
    return {"tasks": [task.to_json() for task in page.tasks], "next_cursor": page.next_cursor}


@blueprint.get("/active")
def active():
    return services().store.counts()


@blueprint.get("/<task_id:task_id>")
def show(task_id: str):
    wait = _number("wait", default=0.0, low=0.0, high=float("inf"), kind=float)
    store = services().store
    task = store.wait(task_id, min(wait, MAX_WAIT)) if wait else store.get(task_id)
    if task is None:
        abort(404, f"no task with id {task_id!r}")
    return task.to_json()


@blueprint.delete("/<task_id:task_id>")
def cancel(task_id: str):
    store = services().store
    if store.cancel(task_id) is None:
        task = store.get(task_id)
        if task is None:
            abort(404, f"no task with id {task_id!r}")
        abort(
            409, f"task {task_id} is {task.status}; only queued or running tasks can be cancelled"
        )
    return store.get(task_id).to_json()


def _number(name: str, default, low, high, kind):
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        bounds = f"from {low} to {high}" if high != float("inf") else f"at least {low}"
        abort(400, f"'{name}' must be a number {bounds}")
    return value
