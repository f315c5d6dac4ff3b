"""The dashboard at `/`: a page to glance at, for people rather than scripts.

The page is rendered here, whole; its script asks `/dashboard/live` for the live part once
a second and swaps it in, so the tables are written once, in the template, and the page
needs no JavaScript framework and nothing from a CDN. Tasks are submitted through the API
itself (`POST /tasks`), so the form gets exactly the checks and errors a client gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Blueprint, render_template

from backend import auth
from backend.health import visible_executors
from backend.services import services
from colsum.task import Task, TaskStatus, instant

# Its templates and static files are the app's own (backend/templates, backend/static).
blueprint = Blueprint("dashboard", __name__)

RECENT = 20  # tasks the page shows, newest first
FINISHED_UNDONE = (TaskStatus.FAILED, TaskStatus.CANCELLED)


# Sums a task shows on the dashboard, which every open tab fetches each second: a result
# of 20,000 columns would be megabytes a second. The rest are a click away, in the API.
SHOWN_SUMS = 10


@dataclass(frozen=True)
class TaskRow:
    """A task as one table row: what an operator reads at a glance."""

    id: str
    source: str
    status: str
    progress: float | None  # 0..1
    rows: int | None
    seconds: float | None  # running so far, or the whole run once finished
    mb_per_second: float | None
    error: str | None
    sums: list[tuple[int, str | None, object]]  # (column, name, exact sum): the first few
    columns: int  # how many sums the result has in all

    @classmethod
    def of(cls, task: Task, now: datetime) -> TaskRow:
        seconds = task.timings()["run_seconds"]
        if task.status is TaskStatus.RUNNING and task.started_at:
            seconds = (now - instant(task.started_at)).total_seconds()
        speed = None
        if seconds and task.bytes_read:
            speed = round(task.bytes_read / 1e6 / seconds, 1)
        result = task.result or {}
        rows = result.get("rows", result.get("count")) if result else task.rows_read
        columns = result.get("columns", [])
        if "even_count" in result:  # sum_even: one sum, of the even integers
            columns = [
                {"column": "even", "name": f"{result['even_count']} of them", "sum": result["sum"]}
            ]
        return cls(
            id=task.id,
            source=task.source.describe(),
            status=task.status.value,
            # A failed task's share read says nothing about the task.
            progress=task.progress if task.status not in FINISHED_UNDONE else None,
            rows=rows,
            seconds=seconds,
            mb_per_second=speed,
            error=task.error,
            sums=[(c["column"], c["name"], c["sum"]) for c in columns[:SHOWN_SUMS]],
            columns=len(columns),
        )


@blueprint.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    """12.3 -> "12.3 s", 125 -> "2 min 5 s": short enough for a table cell."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"


@blueprint.app_template_filter("ago")
def ago(stamp: str | None) -> str:
    """An ISO timestamp as the time since then."""
    if not stamp:
        return ""
    return f"{duration((datetime.now(UTC) - instant(stamp)).total_seconds())} ago"


def _state() -> dict[str, object]:
    """What the caller may see: its own tasks and counts; the admin's (and open mode's) all."""
    store = services().store
    now = datetime.now(UTC)
    mine = None if auth.is_admin() else auth.current_client()
    # The tasks before the counts: a task that finishes in between then shows as running
    # for a second, never as done beside a count that still has it active.
    tasks = [TaskRow.of(task, now) for task in store.page(None, RECENT, None, client=mine).tasks]
    return {
        "counts": store.counts(client=mine),
        "executors": sorted(visible_executors(), key=lambda e: str(e["id"])),
        "tasks": tasks,
    }


@blueprint.get("/")
def page():
    return render_template("dashboard.html", **_state())


@blueprint.get("/dashboard/live")
def live():
    """The part of the page that changes, as HTML for the page's script to swap in."""
    return render_template("live.html", **_state())
