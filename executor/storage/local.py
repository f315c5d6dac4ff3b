"""Files below DATA_DIR."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from colsum.errors import PermanentError, SourceChanged, TransientError
from colsum.task import LocalSource
from executor.storage.resumable import ReadStats, ResumableReader, RetryPolicy

READ_BUFFER = 1 << 20


class LocalStorage:
    """A path may not lead out of the root, not even through a symlink."""

    def __init__(self, root: Path, policy: RetryPolicy | None = None) -> None:
        self.root = root
        self.policy = policy or RetryPolicy()

    def open(self, source: LocalSource, stats: ReadStats, label: str = "") -> BinaryIO:
        root = self.root.resolve()
        path = (root / source.path).resolve()
        if not path.is_relative_to(root):
            raise PermanentError(f"{source.path} leads outside DATA_DIR")
        reader = ResumableReader(LocalFile(path, source.path, root), self.policy, stats, label)
        return io.BufferedReader(reader, READ_BUFFER)


class LocalFile:
    """Opens a file at an offset; a resume checks it is still the file first opened."""

    def __init__(self, path: Path, name: str, root: Path) -> None:
        self.path = path
        self.name = name
        self.root = root
        self._version: tuple[int, int, int] | None = None
        self.size: int | None = None

    def open_at(self, offset: int) -> _TranslatedFile:
        try:
            raw = self.path.open("rb", buffering=0)
        except FileNotFoundError:
            raise PermanentError(f"file not found: {self.name} (in DATA_DIR {self.root})") from None
        except IsADirectoryError:
            raise PermanentError(f"{self.name} is a directory, not a CSV file") from None
        except PermissionError:
            raise PermanentError(f"permission denied reading {self.name}") from None
        except OSError as error:
            raise TransientError(f"opening {self.name} failed: {error}") from error
        status = os.fstat(raw.fileno())
        version = (status.st_ino, status.st_size, status.st_mtime_ns)
        if self._version is None:
            self._version = version
            self.size = status.st_size or None  # 0 for a pipe: unknown
        elif version != self._version:
            raw.close()
            raise SourceChanged(f"{self.name} was replaced while it was being read")
        if offset:
            raw.seek(offset)
        return _TranslatedFile(raw, self.name)


class _TranslatedFile:
    """Read errors arrive as TransientError: a failing disk or network mount may recover."""

    def __init__(self, raw: io.FileIO, name: str) -> None:
        self.raw = raw
        self.name = name

    def readinto(self, buffer) -> int:
        try:
            return self.raw.readinto(buffer) or 0
        except OSError as error:
            raise TransientError(f"reading {self.name} failed: {error}") from error

    def close(self) -> None:
        self.raw.close()
