"""Log lines look the same in both services: plain for a console, JSON lines for a log stack.

Every line written while a task is in hand carries its `task_id`, taken from a context
variable the executor sets on each thread that works on the task.
"""

from __future__ import annotations

import contextvars
import json
import logging

from colsum.settings import Settings

TASK_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)


class _TaskIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task_id"):
            record.task_id = TASK_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "task_id", None):
            line["task_id"] = record.task_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_TaskIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    logging.getLogger("pika").setLevel(logging.WARNING)
