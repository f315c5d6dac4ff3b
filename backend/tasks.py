"""The `/tasks` resource."""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, request
from werkzeug.exceptions import BadRequest

from backend import uploads, validation
from backend.services import services
from colsum.errors import BrokerUnavailable, StoreUnavailable
from colsum.task import Task, TaskRequest, TaskStatus

blueprint = Blueprint("tasks", __name__, url_prefix="/tasks")

MAX_WAIT = 60.0  # seconds a long poll may last
UPLOAD_LIMIT = 1 << 50  # uploads are bounded by the disk, not by MAX_CONTENT_LENGTH
DEFAULT_LIMIT = 20


@blueprint.post("")
def create():
    if request.mimetype == "text/csv":
        validation.check(request)
        return upload(_query_options())
    if not request.is_json:
        abort(
            415,
            "send the task as JSON with 'Content-Type: application/json', "
            "or a CSV file with 'Content-Type: text/csv'",
        )
    try:
        body = request.get_json()
    except BadRequest:
        abort(400, "the request body is not valid JSON")
    if not isinstance(body, dict):
        abort(400, 'the body must be a JSON object: {"storage": "local", "path": "..."}')
    validation.check(request)
    body = {**_query_options(), **body}  # fields in the body win over the query's
    return enqueue(Task.from_request(TaskRequest.from_body(body)))


def upload(options: dict[str, object]):
    """The body is the CSV; `header`, `delimiter` and `filename` come as query parameters
    (or the name in a Content-Disposition header)."""
    request.max_content_length = UPLOAD_LIMIT  # uploads.store applies UPLOAD_MAX_BYTES
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        abort(415, f"send the CSV uncompressed: Content-Encoding {encoding!r} is not supported")
    task_id = uuid.uuid4().hex
    settings = services().settings
    if connection := request.environ.get("gunicorn.socket"):
        # Without it a client that stops sending holds this thread for good; gunicorn
        # sets the socket's mode again for the connection's next request.
        connection.settimeout(settings.upload_idle_timeout)
    name = uploads.filename_of(
        request.args.get("filename"), request.headers.get("Content-Disposition")
    )
    try:
        source = uploads.store(task_id, request.stream, settings, request.content_length, name)
    except uploads.UploadRefused as error:
        return {"error": str(error)}, error.status
    try:
        return enqueue(Task(id=task_id, source=source, **options))
    except (BrokerUnavailable, StoreUnavailable):
        uploads.discard(source, settings)
        raise


def _query_options() -> dict[str, object]:
    """`header` and `delimiter` from the query string, as the spec allowed them."""
    options: dict[str, object] = {}
    if "header" in request.args:
        options["header"] = request.args["header"] == "true"
    if "delimiter" in request.args:
        options["delimiter"] = request.args["delimiter"]
    return options


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
    validation.check(request)
    status = request.args.get("status")
    limit = int(request.args.get("limit", DEFAULT_LIMIT))
    cursor = request.args.get("cursor")
    page = services().store.page(TaskStatus(status) if status else None, limit, cursor)
    return {"tasks": [task.to_json() for task in page.tasks], "next_cursor": page.next_cursor}


@blueprint.get("/active")
def active():
    return services().store.counts()


@blueprint.get("/<task_id:task_id>")
def show(task_id: str):
    validation.check(request)
    wait = float(request.args.get("wait", 0))
    store = services().store
    task = store.wait(task_id, min(wait, MAX_WAIT)) if wait else store.get(task_id)
    if task is None:
        abort(404, f"no task with id {task_id!r}")
    return task.to_json()


@blueprint.delete("/<task_id:task_id>")
def cancel(task_id: str):
    validation.check(request)
    store = services().store
    if store.cancel(task_id) is None:
        task = store.get(task_id)
        if task is None:
            abort(404, f"no task with id {task_id!r}")
        abort(
            409, f"task {task_id} is {task.status}; only queued or running tasks can be cancelled"
        )
    return store.get(task_id).to_json()
