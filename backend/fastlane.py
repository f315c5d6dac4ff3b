"""The two hottest reads, answered before Flask: `GET /tasks/<id>` (no query) and
`GET /tasks/active`. Flask's request context, routing and hooks cost more than the Redis
round trip itself; here a request takes the route regex, the caller's identity
(backend/auth.py's `identify`), the read and the same JSON the views write, and is counted
in the same metric. Whatever it cannot answer with a 200 (a query, a body, a refused token,
a task not found or not the caller's, Redis down) goes to Flask unchanged, which answers
as it always has: the views stay the reference, and tests/backend/test_fastlane.py holds
both to the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from backend import auth, tasks
from backend.services import Services
from colsum import jsoncodec
from colsum.errors import StoreUnavailable
from colsum.task import TASK_ID

TASK = re.compile(rf"/tasks/({TASK_ID})")
HEADERS = [("Content-Type", "application/json")]

WSGIApp = Callable[[dict[str, Any], Callable], Iterable[bytes]]


class FastLane:
    """WSGI middleware in front of the Flask app's own wsgi_app."""

    def __init__(self, app: Flask, inner: WSGIApp) -> None:
        from backend.metrics import REQUESTS  # after `python -m backend` set up its storage

        self.inner = inner
        self.found: Services = app.extensions["colsum"]
        # Rate limits are flask-limiter's, in Flask's hooks: with them on, no fast lane.
        self.enabled = not self.found.settings.rate_limit
        self.counted = {
            "task": REQUESTS.labels("GET", "/tasks/<task_id:task_id>", "200"),
            "active": REQUESTS.labels("GET", "/tasks/active", "200"),
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
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
