"""Uploads: a CSV sent as the body of `POST /tasks`, for users who have no S3 of their own.

The body is streamed to storage, a megabyte at a time, never held whole in memory: to
DATA_DIR/uploads/<task id>.csv, which the executors read, or to UPLOAD_BUCKET when set.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from colsum.s3client import make_client
from colsum.settings import Settings
from colsum.task import LocalSource, S3Source

CHUNK = 1 << 20


def store(task_id: str, body: BinaryIO, settings: Settings) -> LocalSource | S3Source:
    """Where the body went, as the task's source."""
    name = f"uploads/{task_id}.csv"
    if settings.upload_bucket:
        # upload_fileobj sends large bodies as a multipart upload, part by part.
        make_client(settings).upload_fileobj(body, settings.upload_bucket, name)
        return S3Source(bucket=settings.upload_bucket, key=name)
    path = settings.data_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    with partial.open("wb") as out:
        while chunk := body.read(CHUNK):
            out.write(chunk)
    os.replace(partial, path)  # executors never see half a file
    return LocalSource(path=name)
