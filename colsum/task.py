"""What a task is: its status, where its CSV lives, and its record as clients see it."""

from __future__ import annotations

import functools
import posixpath
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from colsum import jsoncodec


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED)


# Task ids are uuid4().hex.
TASK_ID = r"[0-9a-f]{32}"


FILENAME_MAX = 255


class _Source(BaseModel):
    model_config = ConfigDict(frozen=True)

    # For an upload, the name the file had on the client's machine. Shown to people, never
    # opened: the file is where `path` or `key` says.
    filename: str | None = None

    @field_validator("filename")
    @classmethod
    def _printable_name(cls, name: str | None) -> str | None:
        """The last part of what the client sent, without control or bidi-override
        characters (which could fake a line in a log or another name), at most 255."""
        if name is None:
            return None
        name = re.split(r"[/\\]", name)[-1]
        name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
        return name.strip()[:FILENAME_MAX].strip() or None


class LocalSource(_Source):
    """A file below the executors' DATA_DIR, named relative to it."""

    storage: Literal["local"] = "local"
    path: str

    @field_validator("path")
    @classmethod
    def _stays_inside_data_dir(cls, path: str) -> str:
        if "\x00" in path:
            raise ValueError("must not contain NUL characters")
        if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path):
            raise ValueError("must be relative to DATA_DIR, not absolute")
        normal = posixpath.normpath(path)
        if normal == ".." or normal.startswith("../"):
            raise ValueError("must stay inside DATA_DIR ('..' leads out of it)")
        if normal == ".":
            raise ValueError("must name a file, not DATA_DIR itself")
        return normal

    def describe(self) -> str:
        return self.path


class S3Source(_Source):
    """An object in the S3 (or S3-compatible) store the executors are configured for."""

    storage: Literal["s3"] = "s3"
    bucket: str
    key: str

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


Source = Annotated[LocalSource | S3Source, Field(discriminator="storage")]

# Within one client's backlog, higher first; across clients the fair share decides.
Priority = Literal["high", "normal", "low"]
# What a task computes: the sums of every 10th column of a CSV (the default), or the sum of
# the even integers of a text file.
Op = Literal["sum_columns", "sum_even"]
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")

# Who a request is when the API runs without ADMIN_TOKEN, and so who owns its tasks.
ANONYMOUS = "anonymous"
_source_adapter: TypeAdapter[LocalSource | S3Source] = TypeAdapter(Source)


class TaskRequest(BaseModel):
    """The body of `POST /tasks`, once the backend checked it against swagger.yaml: a
    source's fields plus the options. Its own checks are the ones a schema cannot make."""

    model_config = ConfigDict(frozen=True)

    source: Source
    header: bool | None = None
    delimiter: str = ","
    callback_url: str | None = None
    priority: Priority = "normal"
    op: Op = "sum_columns"

    @model_validator(mode="after")
    def _csv_options_for_csv_tasks(self) -> TaskRequest:
        refuse_csv_options(self.op, self.model_fields_set)
        return self

    @classmethod
    def from_body(cls, body: Any) -> TaskRequest:
        """Build the request from a body the spec accepted (a JSON object); raises
        pydantic.ValidationError for what a schema cannot check."""
        fields = dict(body)
        names = ("header", "delimiter", "callback_url", "priority", "op")
        options = {name: fields.pop(name) for name in names if name in fields}
        return cls.model_validate({"source": fields, **options})


@functools.lru_cache(maxsize=4096)
def _source(text: str) -> LocalSource | S3Source:
    """A stored source, parsed once per process: sources are frozen, and the same few
    are read over and over (every GET of a task parses its record)."""
    return _source_adapter.validate_json(text)


# A record's `header`, as jsoncodec.dumps wrote it.
_HEADERS = {"null": None, "true": True, "false": False}


def refuse_csv_options(op: str, given: Iterable[str]) -> None:
    """ValueError if a task that reads no CSV was given a CSV's options."""
    if op == "sum_even" and {"header", "delimiter"} & set(given):
        raise ValueError("'header' and 'delimiter' are options of sum_columns, not sum_even")


def instant(stamp: str | None) -> datetime | None:
    """A record's timestamp (ISO 8601, `Z` for UTC) as an aware datetime."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


COUNTERS = (
    "attempt",
    "attempts",
    "resumes",
    "bytes_read",
    "bytes_total",
    "rows_read",
    "webhook_attempts",
    "parts_total",
    "parts_done",
    "parts_failed",
)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Task:
    """One task's record, as stored in Redis and as the API shows it."""

    source: LocalSource | S3Source
    header: bool | None = None
    delimiter: str = ","
    callback_url: str | None = None
    client: str = ANONYMOUS
    priority: Priority = "normal"
    op: Op = "sum_columns"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: TaskStatus = TaskStatus.QUEUED
    created_at: str = field(default_factory=now)
    started_at: str | None = None
    finished_at: str | None = None
    result: dict[str, Any] | jsoncodec.RawJSON | None = None
    error: str | None = None
    # Which executor holds (or last held) the task, and on which delivery of its message.
    executor: str | None = None
    attempt: int | None = None
    # How far the task has got (updated while it runs), and what reading the file cost.
    attempts: int | None = None
    resumes: int | None = None
    bytes_read: int | None = None
    bytes_total: int | None = None
    rows_read: int | None = None
    # Delivery of the final record to callback_url: pending, delivered or failed.
    webhook_status: str | None = None
    webhook_attempts: int | None = None
    webhook_error: str | None = None
    # A task split into parts (executor/split.py): how many, how many have their outcome,
    # the executors that took one; `unsplit` once it is to be summed as one stream.
    parts_total: int | None = None
    parts_done: int | None = None
    parts_failed: int | None = None
    parts_executors: str | None = None
    unsplit: bool = False

    @classmethod
    def from_request(cls, request: TaskRequest, client: str = ANONYMOUS) -> Task:
        return cls(
            source=request.source,
            header=request.header,
            delimiter=request.delimiter,
            callback_url=request.callback_url,
            client=client,
            priority=request.priority,
            op=request.op,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "client": self.client,
            "priority": self.priority,
            "op": self.op,
            "source": self.source.model_dump(exclude_none=True),
            "header": self.header,
            "delimiter": self.delimiter,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "error": self.error,
            "executor": self.executor,
            "attempt": self.attempt,
            "attempts": self.attempts,
            "resumes": self.resumes,
            "bytes_read": self.bytes_read,
            "bytes_total": self.bytes_total,
            "rows_read": self.rows_read,
            "progress": self.progress,
            **self.timings(),
            "callback_url": self.callback_url,
            "webhook": None
            if self.webhook_status is None
            else {
                "status": self.webhook_status,
                "attempts": self.webhook_attempts,
                "last_error": self.webhook_error,
            },
            **self.parts(),
        }

    def parts(self) -> dict[str, Any]:
        """`parts` as the API shows them, for a split task only: the JSON of other tasks
        stays what clients older than splitting know."""
        if self.parts_total is None:
            return {}
        parts = {
            "total": self.parts_total,
            "done": self.parts_done or 0,
            "failed": self.parts_failed or 0,
            "executors": (self.parts_executors or "").split(),
        }
        return {"parts": parts}

    @property
    def progress(self) -> float | None:
        """From 0 to 1: the share of the file read; 1 once done."""
        if self.status is TaskStatus.DONE:
            return 1.0
        if self.bytes_read is None or not self.bytes_total:
            return 0.0 if self.status in (TaskStatus.QUEUED, TaskStatus.RUNNING) else None
        return round(min(1.0, self.bytes_read / self.bytes_total), 4)

    def timings(self) -> dict[str, Any]:
        """Derived from the timestamps: waiting in the queue, running, both, and speed."""
        created, started, finished = (
            instant(t) for t in (self.created_at, self.started_at, self.finished_at)
        )
        run = _seconds(started, finished)
        return {
            "queued_at": self.created_at,
            "wait_seconds": _seconds(created, started),
            "run_seconds": run,
            "lead_seconds": _seconds(created, finished),
            "mb_per_second": round(self.bytes_read / 1e6 / run, 1)
            if run and self.bytes_read
            else None,
        }

    def to_redis(self) -> dict[str, str]:
        """A flat hash, so that status changes can update single fields atomically."""
        record = {
            "id": self.id,
            "status": self.status.value,
            "source": self.source.model_dump_json(exclude_none=True),
            "header": jsoncodec.dumps(self.header),
            "delimiter": self.delimiter,
            "created_at": self.created_at,
            "client": self.client,
            "priority": self.priority,
            "op": self.op,
        }
        texts = ("started_at", "finished_at", "error", "executor", "callback_url")
        for name in (*texts, "webhook_status", "webhook_error", *COUNTERS):
            if (value := getattr(self, name)) is not None:
                record[name] = str(value)
        if self.result is not None:
            record["result"] = jsoncodec.dumps(self.result)
        return record

    @classmethod
    def from_redis(cls, record: dict[str, str], raw_result: bool = False) -> Task:
        """`raw_result`: keep the result as the JSON text stored (jsoncodec.RawJSON), for
        a task that is only to be shown: decoding and encoding it again costs more than the
        rest of a GET."""
        result = record.get("result")
        return cls(
            id=record["id"],
            status=TaskStatus(record["status"]),
            source=_source(record["source"]),
            header=_HEADERS[record.get("header", "null")],
            delimiter=record.get("delimiter", ","),
            client=record.get("client", ANONYMOUS),
            priority=record.get("priority", "normal"),
            op=record.get("op", "sum_columns"),
            created_at=record["created_at"],
            started_at=record.get("started_at"),
            finished_at=record.get("finished_at"),
            result=None
            if result is None
            else jsoncodec.RawJSON(result)
            if raw_result
            else jsoncodec.loads(result),
            error=record.get("error"),
            executor=record.get("executor"),
            callback_url=record.get("callback_url"),
            webhook_status=record.get("webhook_status"),
            webhook_error=record.get("webhook_error"),
            parts_executors=record.get("parts_executors"),
            unsplit="unsplit" in record,
            **{name: int(record[name]) for name in COUNTERS if name in record},
        )
