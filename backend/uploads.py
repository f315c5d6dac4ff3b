"""Uploads: a CSV sent as the body of `POST /tasks`, for users who have no S3 of their own.

The body is streamed to storage, never held whole in memory: to DATA_DIR, which the
executors read, a megabyte at a time, or to UPLOAD_BUCKET when set, one 8 MiB part at a
time; in either, below the client's own folder (colsum/uploads.py names the layouts).
An upload is kept only when it arrived whole: at most UPLOAD_MAX_BYTES, and as many bytes
as its Content-Length said. A body refused, cut short or broken off leaves nothing behind:
no file, no `.part` file, no object, no unfinished multipart upload.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

from botocore.exceptions import BotoCoreError, ClientError
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import parse_options_header

from colsum import uploads as upload_names
from colsum.s3client import make_client
from colsum.scope import Scope
from colsum.settings import Settings
from colsum.task import ANONYMOUS, LocalSource, S3Source

CHUNK = 1 << 20
PART = 8 << 20  # the smallest S3 part we send; one part is held in memory at a time
MAX_PARTS = 10_000  # S3's limit for one multipart upload


class UploadNotStored(Exception):
    """The backend could not keep the body: a problem of its setup, not of the request."""


class UploadRefused(Exception):
    """The body cannot be kept, for a reason the client can fix; `status` is the answer."""

    status = 400


class UploadTooLarge(UploadRefused):
    status = 413


class UploadCutShort(UploadRefused):
    status = 400


class Body:
    """The request body as it arrives, counted: more than `limit` bytes (0: no limit) is
    refused as soon as it arrives, and an end before `length` (the Content-Length, when the
    client sent one) is a body cut short, not the end of the file."""

    def __init__(self, stream: BinaryIO, length: int | None, limit: int, idle: float) -> None:
        self.stream = stream
        self.length = length
        self.limit = limit
        self.idle = idle  # the socket's timeout, for the message
        self.received = 0

    def refuse_early(self) -> None:
        """Refuse, before reading a byte, a body whose Content-Length is over the limit."""
        if self.limit and self.length is not None and self.length > self.limit:
            raise too_large(self.limit)

    def read(self, size: int) -> bytes:
        try:
            chunk = self.stream.read(size)
        except (ClientDisconnected, OSError) as error:  # a reset, a stall, a chunk cut off
            raise self.cut_short(stalled=_timed_out(error)) from error
        self.received += len(chunk)
        if self.limit and self.received > self.limit:
            raise too_large(self.limit)
        if not chunk and self.length is not None and self.received < self.length:
            raise self.cut_short()
        return chunk

    def cut_short(self, stalled: bool = False) -> UploadCutShort:
        if stalled:  # no count: the server may hold a few bytes it had not passed on
            return UploadCutShort(
                f"the upload stalled: nothing arrived for {self.idle:g} s (UPLOAD_IDLE_TIMEOUT)"
            )
        if self.length is None:
            return UploadCutShort(f"the upload was cut short after {self.received} bytes")
        return UploadCutShort(
            f"the upload was cut short: {self.received} of {self.length} bytes arrived"
        )


def _timed_out(error: BaseException | None) -> bool:
    """Whether a socket timeout lies behind the error (werkzeug raises its own in its place)."""
    while error is not None:
        if isinstance(error, TimeoutError):
            return True
        error = error.__cause__ or error.__context__
    return False


def too_large(limit: int) -> UploadTooLarge:
    return UploadTooLarge(
        f"the upload is larger than {_size(limit)}, the most this service accepts "
        f"(UPLOAD_MAX_BYTES={limit})"
    )


def _size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.4g} {unit}"
    return f"{count} bytes"


def filename_of(query: str | None, disposition: str | None) -> str | None:
    """The name the client gave the file: `?filename=`, else the Content-Disposition
    header's `filename` (or `filename*`). The task model cleans it (colsum/task.py)."""
    if query:
        return query
    if disposition:
        return parse_options_header(disposition)[1].get("filename") or None
    return None


def store(
    task_id: str,
    stream: BinaryIO,
    settings: Settings,
    length: int | None = None,
    filename: str | None = None,
    client: str = ANONYMOUS,
) -> LocalSource | S3Source:
    """Where the body went, as the task's source (a path relative to the client's root).
    Raises UploadRefused for a body that is too large or did not arrive whole,
    UploadNotStored when storage fails."""
    body = Body(stream, length, settings.upload_max_bytes, settings.upload_idle_timeout)
    body.refuse_early()
    if settings.upload_bucket:
        key = upload_names.key(task_id, client)
        try:
            _to_bucket(make_client(settings), settings.upload_bucket, key, body)
        except (BotoCoreError, ClientError) as error:
            raise UploadNotStored(
                f"cannot store the upload in UPLOAD_BUCKET {settings.upload_bucket!r}: {error}"
            ) from error
        return S3Source(bucket=settings.upload_bucket, key=key, filename=filename)
    root = Scope.from_settings(settings).root(client)
    path = upload_names.path(task_id, client, settings.client_dirs)
    partial = upload_names.partial(task_id, client, settings.client_dirs)
    where = (root / path).parent.relative_to(settings.data_dir).as_posix()
    _to_file(root / path, root / partial, body, f"DATA_DIR/{where}")
    return LocalSource(path=path, filename=filename)


def _to_file(path: Path, partial: Path, body: Body, where: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as out:
            while chunk := body.read(CHUNK):
                out.write(chunk)
        os.replace(partial, path)  # executors never see half a file
    except OSError as error:
        raise UploadNotStored(
            f"cannot store the upload in {where} ({error.strerror}): make it "
            "writable by the backend, or set UPLOAD_BUCKET"
        ) from error
    finally:  # whatever stopped the copy, refused, broken off or failed
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def _to_bucket(client, bucket: str, key: str, body: Body) -> None:
    """A small body in one PUT; a larger one as a multipart upload, one part in memory at a
    time (boto3's upload_fileobj holds ten), aborted unless it completes."""
    # Parts grow for a body so large that 8 MiB ones would pass S3's 10,000.
    size = max(PART, -(-(body.length or body.limit) // MAX_PARTS))
    data = _read(body, size)
    if len(data) < size:
        client.put_object(Bucket=bucket, Key=key, Body=data)
        return
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        while data:
            number = len(parts) + 1
            sent = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=data
            )
            parts.append({"PartNumber": number, "ETag": sent["ETag"]})
            data = bytearray()  # let this part go before the next one is read
            data = _read(body, size)
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        with contextlib.suppress(BotoCoreError, ClientError):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        raise


def _read(body: Body, size: int) -> bytearray:
    """Up to `size` bytes; fewer only at the end of the body. A bytearray, which botocore
    sends as it is: bytes() would copy the part."""
    buffer = bytearray()
    while len(buffer) < size and (chunk := body.read(min(CHUNK, size - len(buffer)))):
        buffer += chunk
    return buffer


def discard(source: LocalSource | S3Source, settings: Settings, client: str = ANONYMOUS) -> None:
    """Remove, if it can, an upload whose task was never created: nobody could name it.
    Never raises, so that the error that stopped the task is the one reported."""
    with contextlib.suppress(BotoCoreError, ClientError, OSError):
        if isinstance(source, S3Source):
            make_client(settings).delete_object(Bucket=source.bucket, Key=source.key)
        else:
            (Scope.from_settings(settings).root(client) / source.path).unlink(missing_ok=True)
