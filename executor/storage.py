"""Where CSV files are read from. Storage errors become TransientError or PermanentError here."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Protocol

from colsum.errors import PermanentError, TransientError
from colsum.settings import Settings
from colsum.task import LocalSource, S3Source

READ_BUFFER = 1 << 20


class Storage(Protocol):
    def open(self, source) -> BinaryIO:
        """A binary stream of the whole file, to be closed by the caller."""
        ...


class _TranslatedReads(io.RawIOBase):
    """A file whose read errors arrive as TransientError: a failing disk or network mount
    may recover, and the task is retried from the start."""

    def __init__(self, raw: io.RawIOBase, name: str) -> None:
        self._raw = raw
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        try:
            return self._raw.readinto(buffer)
        except OSError as error:
            raise TransientError(f"reading {self._name} failed: {error}") from error

    def close(self) -> None:
        self._raw.close()
        super().close()


class LocalStorage:
    """Files below DATA_DIR; a path may not lead out of it, not even through a symlink."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, source: LocalSource) -> BinaryIO:
        root = self.root.resolve()
        path = (root / source.path).resolve()
        if not path.is_relative_to(root):
            raise PermanentError(f"{source.path} leads outside DATA_DIR")
        try:
            raw = path.open("rb", buffering=0)
        except FileNotFoundError:
            raise PermanentError(f"file not found: {source.path} (in DATA_DIR {root})") from None
        except IsADirectoryError:
            raise PermanentError(f"{source.path} is a directory, not a CSV file") from None
        except PermissionError:
            raise PermanentError(f"permission denied reading {source.path}") from None
        except OSError as error:
            raise TransientError(f"opening {source.path} failed: {error}") from error
        return io.BufferedReader(_TranslatedReads(raw, source.path), READ_BUFFER)


class UnconfiguredS3Storage:
    def open(self, source: S3Source) -> BinaryIO:
        raise PermanentError(f"S3 storage is not configured; cannot read {source.describe()}")


def storages(settings: Settings) -> dict[str, Storage]:
    """The storage for each value of a task's `source.storage`."""
    return {"local": LocalStorage(settings.data_dir), "s3": UnconfiguredS3Storage()}
