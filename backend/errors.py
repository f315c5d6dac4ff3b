"""Every error leaves the API as `{"error": "..."}` with a status a client can act on."""

from __future__ import annotations

import logging
import re

import pydantic
from flask import Flask, request
from werkzeug.exceptions import HTTPException

from backend.uploads import UploadNotStored
from backend.validation import InvalidRequest, clip
from colsum.errors import BrokerUnavailable, StoreUnavailable, TooManyQueued
from colsum.task import TASK_ID

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # Keep werkzeug's headers but its HTML type: a 405's Allow, for one.
        headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        message = (error.code == 404 and _not_a_task_id()) or error.description
        return {"error": message}, error.code, headers

    @app.errorhandler(InvalidRequest)
    def invalid_request(error: InvalidRequest):
        return {"error": str(error)}, 400

    @app.errorhandler(pydantic.ValidationError)
    def invalid_task(error: pydantic.ValidationError):
        return {"error": describe(error)}, 400

    app.register_error_handler(BrokerUnavailable, answer)
    app.register_error_handler(StoreUnavailable, answer)
    app.register_error_handler(TooManyQueued, answer)

    @app.errorhandler(UploadNotStored)
    def upload_not_stored(error: UploadNotStored):
        log.error("%s", error)
        return {"error": str(error)}, 500

    @app.errorhandler(413)
    def too_large(error: HTTPException):
        limit = app.config["MAX_CONTENT_LENGTH"] // 1024
        return {"error": f"the request body is larger than {limit} KiB"}, 413

    @app.errorhandler(Exception)
    def internal_error(error: Exception):
        log.exception("unhandled error")
        return {"error": "internal server error"}, 500


def answer(
    error: BrokerUnavailable | StoreUnavailable | TooManyQueued,
) -> tuple[dict[str, str], int, dict[str, str]]:
    """The answer to what a request meets in Redis or RabbitMQ, from Flask's views and the
    fast lane alike (backend/fastlane.py)."""
    retry = {"Retry-After": RETRY_AFTER_SECONDS}
    if isinstance(error, TooManyQueued):
        return {"error": str(error)}, 429, retry
    log.warning("answering 503: %s", error)
    if isinstance(error, StoreUnavailable):
        return {"error": "the task store is unavailable; try again shortly"}, 503, retry
    return {"error": "the task queue is unavailable; try again shortly"}, 503, retry


def describe(error: pydantic.ValidationError) -> str:
    """One sentence per problem, naming the field as the client sent it.

    The spec has checked the body's shape already (backend/validation.py); what reaches
    here is what a schema cannot say, such as a path leading out of DATA_DIR."""
    problems = []
    for problem in error.errors():
        # ('source', 'local', 'path') -> 'path': the nesting is ours, not the client's.
        names = [str(part) for part in problem["loc"] if part not in ("source", "local", "s3")]
        message = problem["msg"].removeprefix("Value error, ")
        if not names:  # the request as a whole: the message names its fields itself
            problems.append(message)
            continue
        problems.append(f"'{names[-1]}' {message[0].lower()}{message[1:]}")
    return "; ".join(problems)


def _not_a_task_id() -> str | None:
    """For /tasks/<x> where x cannot be an id (a short one copied from the dashboard, say),
    a message that says so instead of werkzeug's "check your spelling"."""
    name = request.path.removeprefix("/tasks/")
    if not request.path.startswith("/tasks/") or re.fullmatch(TASK_ID, name):
        return None  # an id, of a task that does not exist: the view's message says so
    if name and "/" not in name:
        id_is = "a task id is the 32 hexadecimal digits POST /tasks gave"
        return f"no task with id {clip(name)}: {id_is}"
    return None
