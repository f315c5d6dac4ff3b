"""Objects in S3 or any S3-compatible store (MinIO, moto, Yandex Object Storage, ...).

botocore retries a request that fails before its body starts; a body cut halfway through is
left to us, and `ResumableReader` continues it with a ranged GET pinned by `IfMatch` to the
ETag seen first, so a replaced object is reported instead of summed half old, half new.
"""

from __future__ import annotations

import io
import threading
from typing import Any, BinaryIO

import botocore.exceptions
import urllib3.exceptions

from colsum.errors import PermanentError, SourceChanged, TransientError
from colsum.s3client import make_client
from colsum.scope import Scope
from colsum.settings import Settings
from colsum.task import ANONYMOUS, S3Source
from executor.storage.prefetch import PrefetchReader
from executor.storage.resumable import ReadStats, ResumableReader, RetryPolicy

READ_BUFFER = 1 << 20

# What a request or a body read raises when the network, not the request, is at fault.
NETWORK_ERRORS: tuple[type[Exception], ...] = (
    botocore.exceptions.ConnectionError,  # connect and read timeouts, closed connections
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    urllib3.exceptions.HTTPError,
    OSError,
)
ACCESS_ERRORS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
THROTTLING_ERRORS = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"}


class S3Storage:
    def __init__(self, settings: Settings, policy: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.scope = Scope.from_settings(settings)
        self.policy = policy or RetryPolicy()
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """One client per process, made on first use (boto3 clients are thread-safe)."""
        with self._lock:
            if self._client is None:
                self._client = make_client(self.settings)
            return self._client

    def open(
        self,
        source: S3Source,
        stats: ReadStats,
        label: str = "",
        cancel: threading.Event | None = None,
        client: str = ANONYMOUS,
        offset: int = 0,
        version: str | None = None,
    ) -> BinaryIO:
        if refused := self.scope.s3_refusal(source.bucket, source.key, client):
            raise PermanentError(f"{source.describe()}: {refused}")
        file = S3Object(self.client, source, etag=version)
        reader = ResumableReader(file, self.policy, stats, label, offset)
        # Download on a thread of its own while the parser works on what came before.
        return io.BufferedReader(PrefetchReader(reader, cancel=cancel), READ_BUFFER)


class S3Object:
    def __init__(self, client: Any, source: S3Source, etag: str | None = None) -> None:
        """`etag`: read only that version (a part of a split task: the one its first part
        saw), with ranged GETs from the first."""
        self.client = client
        self.source = source
        self.name = source.describe()
        self._etag = etag
        self.size: int | None = None

    @property
    def version(self) -> str | None:
        return self._etag

    def open_at(self, offset: int) -> _Body:
        if self.size is not None and offset >= self.size:
            return _Body(None, self.name)  # everything was read; only the end was lost
        request: dict[str, Any] = {"Bucket": self.source.bucket, "Key": self.source.key}
        if self._etag is not None:
            request |= {"IfMatch": self._etag, "Range": f"bytes={offset}-"}
        try:
            response = self.client.get_object(**request)
        except botocore.exceptions.ClientError as error:
            raise self.translate(error) from error
        except botocore.exceptions.NoCredentialsError:
            raise PermanentError(
                f"no S3 credentials to read {self.name}: set AWS_ID and AWS_SECRET"
            ) from None
        except NETWORK_ERRORS as error:
            raise TransientError(f"requesting {self.name} failed: {error}") from error
        if self._etag is None:
            self._etag = response["ETag"]
        if self.size is None:
            whole = response.get("ContentRange", "").rpartition("/")[2]
            self.size = int(whole) if whole.isdigit() else response["ContentLength"]
        return _Body(response["Body"], self.name)

    def translate(self, error: botocore.exceptions.ClientError) -> Exception:
        """The Colsum error for an S3 error response."""
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        name, bucket = self.name, self.source.bucket
        if code == "NoSuchBucket":
            return PermanentError(f"{name}: bucket {bucket!r} does not exist")
        if code in ("NoSuchKey", "NotFound", "404"):
            return PermanentError(f"{name} does not exist (no such key)")
        if code in ACCESS_ERRORS or status == 403:
            return PermanentError(
                f"access to {name} denied ({code or status}): check AWS_ID, AWS_SECRET and "
                "the bucket's policy"
            )
        if code == "PreconditionFailed" or status == 412:
            return SourceChanged(f"{name} was replaced while it was being read")
        if code in THROTTLING_ERRORS or status >= 500:
            return TransientError(f"S3 answered {code or status} for {name}")
        return PermanentError(f"S3 refused to read {name}: {code or status}: {error}")


class _Body:
    def __init__(self, body: Any, name: str) -> None:
        self.body = body
        self.name = name

    def readinto(self, buffer) -> int:
        if self.body is None:
            return 0
        try:
            return self.body.readinto(buffer)
        except NETWORK_ERRORS as error:
            raise TransientError(f"reading {self.name} broke off: {error}") from error

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
