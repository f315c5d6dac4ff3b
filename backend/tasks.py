"""The `/tasks` resource."""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable

from flask import Blueprint, abort, current_app, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import BadRequest, ClientDisconnected

from backend import asgi, auth, uploads, validation
from backend.services import Services, services
from colsum import fair_queue, webhook_targets
from colsum.errors import BrokerUnavailable, StoreUnavailable, TooManyQueued
from colsum.scope import Scope
from colsum.task import Task, TaskRequest, TaskStatus, refuse_csv_options

log = logging.getLogger(__name__)

blueprint = Blueprint("tasks", __name__, url_prefix="/tasks")

MAX_WAIT = 60.0  # seconds a long poll may last
UPLOAD_LIMIT = 1 << 50  # uploads are bounded by UPLOAD_MAX_BYTES, not by MAX_CONTENT_LENGTH
DEFAULT_LIMIT = 20
# Threads of a worker process that a long poll may never take: they serve everything
# else (/healthz, POST /tasks, GET /tasks/<id>) however many clients wait.
FREE_THREADS = 2
LONG_POLLS = "colsum.long_polls"  # app.extensions key: the process's long-poll slots
RETRY_AFTER_SECONDS = "1"  # for a long poll answered early because every slot was taken


@blueprint.record_once
def _long_poll_slots(state: BlueprintSetupState) -> None:
    """One semaphore per app, so per gunicorn worker process (each builds its own app)."""
    threads = state.app.extensions["colsum"].settings.web_threads
    state.app.extensions[LONG_POLLS] = threading.BoundedSemaphore(max(0, threads - FREE_THREADS))


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
    _refuse_an_endless_body()
    try:
        body = request.get_json()
    except ClientDisconnected:  # gone, or silent for too long (backend/asgi.py)
        abort(400, "the request body did not arrive whole")
    except BadRequest:
        abort(400, _not_json())
    except RecursionError:
        abort(400, validation.NESTED_TOO_DEEPLY)
    if not isinstance(body, dict):
        abort(400, 'the body must be a JSON object: {"storage": "local", "path": "..."}')
    validation.check(request)
    body = {**_query_options(), **body}  # fields in the body win over the query's
    task_request = TaskRequest.from_body(body)
    if task_request.callback_url is not None:
        # Early word for an internal address; the executor checks again on the address it
        # resolves at delivery (colsum/webhook_targets.py).
        refused = webhook_targets.refusal(task_request.callback_url, services().settings)
        if refused is not None:
            abort(400, refused)
    client = auth.current_client()
    # Early word, as for callback URLs; the executor asks again where the file really is.
    if refused := Scope.from_settings(services().settings).refusal(task_request.source, client):
        abort(400, refused)
    return created(services(), Task.from_request(task_request, client))


def upload(options: dict[str, object]):
    """The body is the file; `header`, `delimiter`, `priority`, `op` and `filename` come as
    query parameters (or the name in a Content-Disposition header)."""
    request.max_content_length = UPLOAD_LIMIT  # uploads.store applies UPLOAD_MAX_BYTES
    try:
        refuse_csv_options(str(options.get("op", "sum_columns")), options)
    except ValueError as error:
        abort(400, str(error))
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        abort(415, f"send the CSV uncompressed: Content-Encoding {encoding!r} is not supported")
    task_id = uuid.uuid4().hex
    settings = services().settings
    asgi.allow_idle(request.environ, settings.upload_idle_timeout)
    name = uploads.filename_of(
        request.args.get("filename"), request.headers.get("Content-Disposition")
    )
    client = auth.current_client()
    try:
        source = uploads.store(
            task_id, request.stream, settings, request.content_length, name, client
        )
    except uploads.UploadRefused as error:
        return {"error": str(error)}, error.status
    try:
        return created(services(), Task(id=task_id, source=source, client=client, **options))
    except (BrokerUnavailable, StoreUnavailable, TooManyQueued):
        uploads.discard(source, settings, client)
        raise


def _not_json() -> str:
    try:
        request.get_data().decode("utf-8")
    except UnicodeDecodeError:  # whatever charset the Content-Type names: JSON is UTF-8
        return "the request body is not valid JSON: send it as UTF-8"
    return "the request body is not valid JSON"


def _refuse_an_endless_body() -> None:
    """A chunked body has no Content-Length: werkzeug stops reading it at
    MAX_CONTENT_LENGTH, silently. One that goes on past the limit is a 413, as it would
    be with a Content-Length, not a truncated document called invalid JSON."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and len(request.get_data()) >= limit:
        request.stream.read(1)  # past the limit: werkzeug raises RequestEntityTooLarge


def _query_options() -> dict[str, object]:
    """`header`, `delimiter`, `priority` and `op` from the query string, as the spec allowed
    them."""
    options: dict[str, object] = {}
    if "header" in request.args:
        options["header"] = request.args["header"] == "true"
    for name in ("delimiter", "priority", "op"):
        if name in request.args:
            options[name] = request.args[name]
    return options


def created(found: Services, task: Task) -> tuple[dict[str, object], int, dict[str, str]]:
    """Record the task in its client's backlog and publish what the fair queue dispatches:
    this task if there is room for it, maybe others that waited. The view's answer, also
    given by the fast lane (backend/fastlane.py)."""
    dispatched = found.store.create(task, found.settings.max_queued_per_client)
    if task.id in dispatched:  # first: if RabbitMQ is down, this request is the one to fail
        dispatched.remove(task.id)
        try:
            found.publisher.publish(task.id)
        except BrokerUnavailable:
            # The client gets no id, so nobody would ever look at this record again.
            found.store.discard(task.id)
            raise
        _published(found, task.id)
    _publish(found, dispatched)
    return task.to_json(), 202, {"Location": f"/tasks/{task.id}"}


def _published(found: Services, task_id: str) -> None:
    # Had this process died before here, the sweeper would publish the task again; so it
    # does if this write fails. The task exists and will run: the client must learn its id.
    try:
        found.store.published(task_id)
    except StoreUnavailable as error:
        log.warning(
            "task %s is published, but stays in the outbox (%s): the sweeper will publish "
            "it again, and the executors take it once",
            task_id,
            error,
        )


def _publish(found: Services, dispatched: list[str]) -> None:
    """Publish tasks of other requests that the fair queue dispatched on this one; if
    RabbitMQ fails now, they wait in the outbox for the sweeper, and this request still
    succeeds: its own task is recorded."""
    try:
        fair_queue.publish_all(
            dispatched, found.publisher.publish, lambda task_id: _published(found, task_id)
        )
    except BrokerUnavailable as error:
        log.warning("dispatched tasks wait in the outbox for the sweeper: %s", error)


@blueprint.get("")
def index():
    validation.check(request)
    status = request.args.get("status")
    limit = int(request.args.get("limit", DEFAULT_LIMIT))
    cursor = request.args.get("cursor")
    page = services().store.page(
        TaskStatus(status) if status else None, limit, cursor, client=_listed_client()
    )
    return {"tasks": [task.to_json() for task in page.tasks], "next_cursor": page.next_cursor}


def _listed_client() -> str | None:
    """Whose tasks GET /tasks lists: the caller's own; the admin's pick (`?client=`), or all.
    A client naming another is refused, whether that client exists or not."""
    asked = request.args.get("client")
    if auth.is_admin():
        return asked
    if asked is not None and asked != auth.current_client():
        abort(403, "a client token lists its own tasks only; '?client=' is for the admin")
    return auth.current_client()


@blueprint.get("/active")
def active():
    validation.check(request)
    return active_counts(services(), auth.current_client(), auth.is_admin())


def active_counts(found: Services, client: str, admin: bool) -> dict[str, object]:
    """The caller's own counts; the admin's also has `all`. In open mode, as it always was:
    the counts of every task."""
    if not found.settings.admin_token:
        return found.store.counts()
    if not admin:
        return found.store.counts(client=client)
    own, everyone = found.store.counts_of(client, None)
    return {**own, "all": everyone}


@blueprint.get("/<task_id:task_id>")
def show(task_id: str):
    validation.check(request)
    wait = _wait_seconds()
    store = services().store
    task = _found(task_id, lambda: store.get(task_id, raw_result=True))
    if not wait or task.status.finished:
        return task.to_json()
    slots = current_app.extensions[LONG_POLLS]
    if not slots.acquire(blocking=False):
        # Every slot is taken: a long poll must not take a thread that other requests
        # need, so this one answers at once, and the client asks again (the spec says so).
        return task.to_json(), 200, {"Retry-After": RETRY_AFTER_SECONDS}
    try:
        return _found(task_id, lambda: store.wait(task_id, wait)).to_json()
    finally:
        slots.release()


def _wait_seconds() -> float:
    """`wait`, which the spec checked is a number of at least 0, at most MAX_WAIT."""
    raw = request.args.get("wait", "0")
    wait = float(raw)
    if not math.isfinite(wait):  # nan, inf and 1e309 pass as numbers
        raise validation.InvalidRequest(
            f"'wait': {validation.clip(raw)} is not a finite number of seconds"
        )
    return min(wait, MAX_WAIT)


def _found(task_id: str, read: Callable[[], Task | None]) -> Task:
    """The task `read` returns, or 404. A record that cannot be read as a task (a hash
    left without its fields) is no task either: logged, never a 500. Nor is another
    client's task, with the very same answer, so that ids cannot be probed."""
    try:
        task = read()
    except (KeyError, ValueError) as error:
        log.warning("task %s has a broken record (%r); answering 404", task_id, error)
        task = None
    if not visible(task, auth.current_client(), auth.is_admin()):
        abort(404, f"no task with id {task_id!r}")
    return task


def visible(task: Task | None, client: str, admin: bool) -> bool:
    """Another client's task is no task to this one, with the very same answer as none."""
    return task is not None and (admin or task.client == client)


@blueprint.delete("/<task_id:task_id>")
def cancel(task_id: str):
    validation.check(request)
    store = services().store
    _found(task_id, lambda: store.get(task_id))  # the caller's to cancel, or 404
    if store.cancel(task_id) is None:
        task = _found(task_id, lambda: store.get(task_id))
        abort(
            409, f"task {task_id} is {task.status}; only queued or running tasks can be cancelled"
        )
    _publish(services(), store.dispatch())  # the cancelled task may have made room for another
    return _found(task_id, lambda: store.get(task_id)).to_json()
