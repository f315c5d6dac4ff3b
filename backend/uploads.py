"""Uploads: a CSV sent as the body of `POST /tasks`, for users who have no S3 of their own.

The body is streamed to storage, a megabyte at a time, never held whole in memory: to
DATA_DIR/uploads/<task id>.csv, which the executors read, or to UPLOAD_BUCKET when set.
"""

from __future__ import annotations

import contextlib
import os
from typing import BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from colsum.s3client import make_client
from colsum.settings import Settings
from colsum.task import LocalSource, S3Source

CHUNK = 1 << 20


class UploadNotStored(Exception):
    """The backend could not keep the body: a problem of its setup, not of the request."""


def store(task_id: str, body: BinaryIO, settings: Settings) -> LocalSource | S3Source:
    """Where the body went, as the task's source."""
    name = f"uploads/{task_id}.csv"
    if settings.upload_bucket:
        try:
            # upload_fileobj sends large bodies as a multipart upload, part by part.
            make_client(settings).upload_fileobj(body, settings.upload_bucket, name)
        except (BotoCoreError, ClientError) as error:
            raise UploadNotStored(
                f"cannot store the upload in UPLOAD_BUCKET {settings.upload_bucket!r}: {error}"
            ) from error
        return S3Source(bucket=settings.upload_bucket, key=name)
    path = settings.data_dir / name
    partial = path.with_suffix(".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as out:
            while chunk := body.read(CHUNK):
                out.write(chunk)
        os.replace(partial, path)  # executors never see half a file
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise UploadNotStored(
            f"cannot store the upload in DATA_DIR/uploads ({error.strerror}): make it "
            "writable by the backend, or set UPLOAD_BUCKET"
        ) from error
    return LocalSource(path=name)


def discard(source: LocalSource | S3Source, settings: Settings) -> None:
    """Remove, if it can, an upload whose task was never created: nobody could name it.
    Never raises, so that the error that stopped the task is the one reported."""
    with contextlib.suppress(BotoCoreError, ClientError, OSError):
        if isinstance(source, S3Source):
            make_client(settings).delete_object(Bucket=source.bucket, Key=source.key)
        else:
            (settings.data_dir / source.path).unlink(missing_ok=True)
