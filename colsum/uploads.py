"""Where an upload lives, named once for the backend that writes it and the executor's
sweeper that deletes it when its task's record has expired.

An upload is `uploads/<task id>.csv`, below DATA_DIR or as a key in UPLOAD_BUCKET, and
`uploads/<task id>.part` while it is being written to DATA_DIR.
"""

from __future__ import annotations

import re

FOLDER = "uploads"
_NAME = re.compile(r"uploads/([0-9a-f]{32})\.(?:csv|part)")


def name(task_id: str) -> str:
    """The upload of a task, relative to DATA_DIR or as its S3 key."""
    return f"{FOLDER}/{task_id}.csv"


def partial(task_id: str) -> str:
    """Where a local upload is written before it is complete."""
    return f"{FOLDER}/{task_id}.part"


def task_id(upload: str) -> str | None:
    """The task an upload (or a partial one) belongs to; None for any other name."""
    match = _NAME.fullmatch(upload)
    return match.group(1) if match else None
