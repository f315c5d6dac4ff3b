"""Where CSV files are read from: one reader per kind of storage, behind one interface.

Every storage hands out a `ResumableReader`, so that a broken stream is continued from the
first byte the parser has not seen, whatever the storage. Storage-specific errors become
TransientError (retried) or PermanentError (fail the task) in the storage's own module.
"""

from __future__ import annotations

import threading
from typing import BinaryIO, Protocol

from colsum.scope import Scope
from colsum.settings import Settings
from colsum.task import ANONYMOUS
from executor.storage.local import LocalStorage
from executor.storage.resumable import ReadStats, RetryPolicy
from executor.storage.s3 import S3Storage

__all__ = ["LocalStorage", "ReadStats", "RetryPolicy", "S3Storage", "Storage", "storages"]


class Storage(Protocol):
    def open(
        self,
        source,
        stats: ReadStats,
        label: str,
        cancel: threading.Event | None = None,
        client: str = ANONYMOUS,
        offset: int = 0,
        version: str | None = None,
    ) -> BinaryIO:
        """A binary stream of the whole file, to be closed by the caller; from byte
        `offset`, of that `version` only (`ReadStats.version` of an earlier read) if given.

        Nothing is fetched until the first read; `stats` counts what the reads cost and
        `label` (the task) starts every log line about retries. A read that waits on the
        network raises TaskInterrupted soon after `cancel` is set. A source the task's
        `client` may not read (colsum/scope.py) raises PermanentError.
        """
        ...


def storages(settings: Settings) -> dict[str, Storage]:
    """The storage for each value of a task's `source.storage`."""
    policy = RetryPolicy.from_settings(settings)
    scope = Scope.from_settings(settings)
    return {
        "local": LocalStorage(settings.data_dir, policy, scope),
        "s3": S3Storage(settings, policy),
    }
