"""A reader that survives a broken stream by opening the file again where it broke."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from colsum.errors import TransientError
from colsum.settings import Settings

log = logging.getLogger(__name__)


class Stream(Protocol):
    def readinto(self, buffer: memoryview) -> int: ...

    def close(self) -> None: ...


class Resumable(Protocol):
    """A stored file that can be opened at any byte offset, pinned to the version first seen.

    `open_at` and the stream's `readinto` raise TransientError for what may heal and
    PermanentError (SourceChanged if the file was replaced) for what will not.
    """

    name: str
    size: int | None  # known once opened
    version: str | None  # what pins the version read (an ETag), known once opened

    def open_at(self, offset: int) -> Stream: ...


@dataclass
class ReadStats:
    """What reading a file cost; shown on the task's record."""

    attempts: int = 0  # requests that opened the file
    resumes: int = 0  # of those, the ones that continued a broken stream
    bytes_read: int = 0
    bytes_total: int | None = None  # the file's size, once it was opened
    rows_read: int = 0  # set by the caller, which parses
    version: str | None = None  # the file's version (Resumable.version): parts read the same

    def count_rows(self, rows: int) -> None:
        self.rows_read = rows

    def to_record(self) -> dict[str, int]:
        record = {
            "attempts": self.attempts,
            "resumes": self.resumes,
            "bytes_read": self.bytes_read,
            "rows_read": self.rows_read,
        }
        if self.bytes_total is not None:
            record["bytes_total"] = self.bytes_total
        return record


@dataclass(frozen=True)
class RetryPolicy:
    """How long a read keeps trying: `attempts` failures in a row without a byte of progress,
    and `budget` seconds spent failing and waiting over the whole task."""

    attempts: int = 5
    max_wait: float = 10.0
    budget: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.storage_attempts, settings.storage_max_wait, settings.storage_budget)


class ResumableReader(io.RawIOBase):
    """Reads a file front to back; when the stream breaks it is opened again at the first
    byte not yet handed out, so the caller never sees a byte twice or a gap."""

    def __init__(
        self,
        file: Resumable,
        policy: RetryPolicy,
        stats: ReadStats,
        label: str,
        offset: int = 0,
    ) -> None:
        self.file = file
        self.policy = policy
        self.stats = stats
        self.label = label
        self.offset = offset  # a part of a split task starts within the file
        self._start = offset
        self._stream: Stream | None = None
        self._failing_since: float | None = None
        self._failed_time = 0.0  # seconds spent in failed attempts and waits, all streaks
        self._retrying: Retrying | None = None  # made at the first failure: most never fail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        """A read that fails is retried with tenacity; one that does not never enters it
        (a tiny file's reads spent more in tenacity's machinery than in reading)."""
        try:
            return self._read_into(buffer)
        except TransientError as error:
            failed = [error]

        def attempt() -> int:
            if failed:
                raise failed.pop()  # the read above, as tenacity's first attempt
            return self._read_into(buffer)

        count = self._retry(attempt)
        if self._failing_since is not None:
            self._failed_time += time.monotonic() - self._failing_since
            self._failing_since = None
        return count

    def _retry(self, attempt: Callable[[], int]) -> int:
        if self._retrying is None:
            policy = self.policy
            self._retrying = Retrying(
                retry=retry_if_exception_type(TransientError),
                stop=stop_after_attempt(policy.attempts) | self._budget_spent,
                wait=wait_exponential_jitter(multiplier=0.1, jitter=0.2, max=policy.max_wait),
                before_sleep=self._log_retry,
                reraise=True,
            )
        return self._retrying(attempt)

    def _read_into(self, buffer) -> int:
        if self._stream is None:
            self.stats.attempts += 1
            if self.offset > self._start:
                self.stats.resumes += 1
            self._stream = self.file.open_at(self.offset)
            self.stats.bytes_total = self.file.size
            self.stats.version = self.file.version
        try:
            count = self._stream.readinto(buffer)
        except TransientError:
            self._close_stream()
            raise
        self.offset += count
        self.stats.bytes_read += count
        return count

    def _budget_spent(self, state: RetryCallState) -> bool:
        if self._failing_since is None:
            self._failing_since = time.monotonic() - (state.seconds_since_start or 0)
        streak = time.monotonic() - self._failing_since
        return self._failed_time + streak >= self.policy.budget

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: reading %s failed at byte %d (attempt %d): %s; retrying",
            self.label,
            self.file.name,
            self.offset,
            state.attempt_number,
            error,
        )

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # a broken stream may fail to close too; it is dropped anyway
                log.debug("closing a broken stream failed", exc_info=True)

    def close(self) -> None:
        self._close_stream()
        super().close()
