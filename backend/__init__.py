"""The REST API: accepts tasks, stores them in Redis, publishes them to RabbitMQ."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask.json.provider import JSONProvider
from werkzeug.routing import BaseConverter

from backend import auth, clients, dashboard, docs, errors, fastlane, health, ratelimit, tasks
from backend.services import Services
from colsum import jsoncodec, logs
from colsum.settings import Settings
from colsum.task import TASK_ID


class ExactJSONProvider(JSONProvider):
    """Serve sums as the exact decimal numbers the executor wrote, not as floats."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return jsoncodec.dumps(obj)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return jsoncodec.loads(s)


class TaskIdConverter(BaseConverter):
    """Only a task id matches /tasks/<id>, so /tasks/active stays a resource of its own."""

    regex = TASK_ID


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(settings)
    # RabbitMQ drops a publisher connection left idle past its heartbeat timeout, and pika
    # logs the drop as an ERROR with two tracebacks when the next request finds it. The
    # Publisher reopens it and says so itself (colsum/broker.py): nothing is wrong.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    app = Flask(__name__)
    app.url_map.converters["task_id"] = TaskIdConverter
    app.json = ExactJSONProvider(app)
    app.extensions["colsum"] = Services.from_settings(settings)
    # Task requests are small JSON documents; anything larger is a mistake or an attack.
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    auth.register(app)
    app.register_blueprint(tasks.blueprint)
    app.register_blueprint(clients.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(dashboard.blueprint)
    docs.register(app)
    # Imported here, not at the top: prometheus-client picks its storage (one process, or
    # gunicorn's many) when it is first imported, after `python -m backend` has chosen.
    from backend import metrics

    metrics.register(app)
    ratelimit.register(app)
    errors.register(app)
    app.wsgi_app = fastlane.FastLane(app, app.wsgi_app)
    return app
