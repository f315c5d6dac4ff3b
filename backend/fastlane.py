"""The hottest routes, answered before Flask: `GET /tasks/<id>` (no query),
`GET /tasks/active` and `POST /tasks` of a JSON task. Flask's request context, routing and
hooks cost more than the Redis round trip itself; here a request takes the route regex, the
caller's identity (backend/auth.py's `identify`), the same checks and store calls as the
views, the same JSON they write, and is counted in the same metrics. Whatever it cannot
answer that way (a query, a refused token, a task not found or not the caller's, a body the
spec or the task model refuses, a callback URL, Redis down for a read) goes to Flask
unchanged, which answers as it always has: the views stay the reference, and
tests/backend/test_fastlane.py holds both to the same answers.

A POST is decided before anything is written: once the lane records a task, it answers
too, with the view's own answer (backend/tasks.py's `created`) or error (backend/errors.py).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import pydantic
from flask import Flask

from backend import auth, errors, tasks, validation
from backend.services import Services
from colsum import jsoncodec
from colsum.errors import BrokerUnavailable, StoreUnavailable, TooManyQueued
from colsum.scope import Scope
from colsum.task import TASK_ID, Task, TaskRequest

TASK = re.compile(rf"/tasks/({TASK_ID})")
HEADERS = [("Content-Type", "application/json")]
SMALL_BODY = 64 * 1024  # MAX_CONTENT_LENGTH: a larger body is Flask's to refuse

Answer = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body

WSGIApp = Callable[[dict[str, Any], Callable], Iterable[bytes]]


class FastLane:
    """WSGI middleware in front of the Flask app's own wsgi_app."""

    def __init__(self, app: Flask, inner: WSGIApp) -> None:
        # Imported here, once `python -m backend` has chosen the metrics' storage.
        from backend.metrics import REQUESTS, TASKS_CREATED

        self.inner = inner
        self.found: Services = app.extensions["colsum"]
        self.scope = Scope.from_settings(self.found.settings)
        self.tasks_created = TASKS_CREATED
        self.requests = REQUESTS
        # Rate limits are flask-limiter's, in Flask's hooks: with them on, no fast lane.
        self.enabled = not self.found.settings.rate_limit
        self.counted = {
            "task": REQUESTS.labels("GET", "/tasks/<task_id:task_id>", "200"),
            "active": REQUESTS.labels("GET", "/tasks/active", "200"),
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "POST" and environ.get("PATH_INFO") == "/tasks":
            task = self.task_to_create(environ, _read_small(environ))
            if task is not None:
                status, headers, body = self.create(task)
                start_response(f"{status} {HTTPStatus(status).phrase}", headers)
                return [body]
            return self.inner(environ, start_response)
        body = self.answer(environ)
        if body is None:
            return self.inner(environ, start_response)
        start_response("200 OK", [*HEADERS, ("Content-Length", str(len(body)))])
        return [body]

    def answer(self, environ: dict[str, Any]) -> bytes | None:
        """The body of the 200 for a read the lane can serve (also on backend/asgi.py's
        event loop), or None: Flask answers it."""
        if (
            not self.enabled
            or environ["REQUEST_METHOD"] != "GET"
            or environ.get("QUERY_STRING")
            or environ.get("CONTENT_LENGTH", "0") not in ("", "0")
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            return None
        path = environ.get("PATH_INFO", "")
        route = "active" if path == "/tasks/active" else "task" if TASK.fullmatch(path) else None
        if route is None:
            return None
        token = auth.token_of(environ.get("HTTP_AUTHORIZATION", ""))
        try:
            caller = auth.identify(token, self.found.settings, self.found.clients)
            if caller is None:
                return None
            if route == "active":
                answer = tasks.active_counts(self.found, *caller)
            else:
                task = self.found.store.show(path.rsplit("/", 1)[1])
                if not tasks.visible(task, *caller):
                    return None
                answer = task.to_json()
        except (StoreUnavailable, KeyError, ValueError):
            return None  # Flask answers it: 503, or 404 for a broken record, as it logs
        self.counted[route].inc()
        return jsoncodec.encode(answer)

    def task_to_create(self, environ: dict[str, Any], body: bytes | None) -> Task | None:
        """The task that `POST /tasks` of this whole JSON `body` asks for, if the view would
        accept it: the spec's schema, then the task model. None: Flask decides, and says
        what is wrong. Writes nothing."""
        if (
            body is None
            or not self.enabled
            or environ["REQUEST_METHOD"] != "POST"
            or environ.get("PATH_INFO") != "/tasks"
            or environ.get("QUERY_STRING")
            or "HTTP_TRANSFER_ENCODING" in environ
            or environ.get("CONTENT_TYPE", "").strip().lower() != "application/json"
        ):
            return None
        token = auth.token_of(environ.get("HTTP_AUTHORIZATION", ""))
        try:
            caller = auth.identify(token, self.found.settings, self.found.clients)
            fields = jsoncodec.loads(body)
        except (StoreUnavailable, ValueError, RecursionError):
            return None
        if caller is None or not validation.body_fits("/tasks", "post", fields):
            return None
        try:
            request = TaskRequest.from_body(fields)
        except pydantic.ValidationError:
            return None
        client = caller[0]
        # A callback URL's check may resolve a name: that waits on a thread, in Flask.
        if request.callback_url is not None or self.scope.refusal(request.source, client):
            return None
        return Task.from_request(request, client)

    def create(self, task: Task) -> Answer:
        """The view's answer to a task `task_to_create` gave. It waits for RabbitMQ's
        confirm when the task goes straight to the queue: a thread's job."""
        try:
            answer, status, headers = tasks.created(self.found, task)
        except (BrokerUnavailable, StoreUnavailable, TooManyQueued) as error:
            answer, status, headers = errors.answer(error)
        self.requests.labels("POST", "/tasks", str(status)).inc()
        if status == 202:
            self.tasks_created.inc()
        body = jsoncodec.encode(answer)
        head = [*HEADERS, ("Content-Length", str(len(body))), *headers.items()]
        return status, head, body


def _read_small(environ: dict[str, Any]) -> bytes | None:
    """A WSGI request's body, when it has a length of at most SMALL_BODY; the app reads
    the same bytes again."""
    length = environ.get("CONTENT_LENGTH", "")
    if not length.isdigit() or int(length) > SMALL_BODY:
        return None
    body = environ["wsgi.input"].read(int(length))
    environ["wsgi.input"] = io.BytesIO(body)
    return body if len(body) == int(length) else None
