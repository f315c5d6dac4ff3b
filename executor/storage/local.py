"""Files below DATA_DIR, or below DATA_DIR/<client>/ with CLIENT_DIRS (the task's root).

Regular files only: opening a FIFO blocks until someone writes to it, a device may never
end. And the root is checked on the opened descriptor itself, so a symlink swapped in
between the path check and the open leads nowhere; so is the rule that a client never reads
another client's upload (colsum/scope.py), on where the file really is.
"""

from __future__ import annotations

import fcntl
import io
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from colsum.errors import PermanentError, SourceChanged, TransientError
from colsum.scope import Scope
from colsum.task import ANONYMOUS, LocalSource
from executor.storage.resumable import ReadStats, ResumableReader, RetryPolicy

READ_BUFFER = 1 << 20


class LocalStorage:
    """A path may not lead out of its task's root, not even through a symlink."""

    def __init__(
        self, root: Path, policy: RetryPolicy | None = None, scope: Scope | None = None
    ) -> None:
        self.root = root
        self.policy = policy or RetryPolicy()
        self.scope = scope or Scope(root)
        # DATA_DIR and the clients' folders, resolved: the operator's, not a client's, so
        # once each (a resolution costs a system call per part of the path, every task).
        self._real: dict[Path, str] = {}

    def _resolved(self, root: Path) -> str:
        if (found := self._real.get(root)) is None:
            found = self._real[root] = os.path.realpath(root)
        return found

    def open(
        self,
        source: LocalSource,
        stats: ReadStats,
        label: str = "",
        cancel: threading.Event | None = None,  # a regular file's reads do not wait long
        client: str = ANONYMOUS,
        offset: int = 0,
        version: str | None = None,
    ) -> BinaryIO:
        try:
            own = self.scope.root(client)
        except ValueError as error:
            raise PermanentError(str(error)) from None
        path = Path(os.path.realpath(own / source.path))
        file = LocalFile(
            path,
            source.path,
            own,
            self.scope.root_label(client),
            self._refusal(client),
            self._resolved(own),
        )
        file.check(path)
        file.pin(version)
        reader = ResumableReader(file, self.policy, stats, label, offset)
        return io.BufferedReader(reader, READ_BUFFER)

    def _refusal(self, client: str) -> Callable[[Path], str | None]:
        """Why the client may not read the file that really is at a path (resolved), if
        that is another client's upload."""
        data_dir = self._resolved(self.root)

        def refusal(real: Path) -> str | None:
            below = _below(str(real), data_dir)
            if below is None:
                return None  # outside the task's root as well: refused as such
            return self.scope.local_refusal(below, client)

        return refusal


def _below(path: str, root: str) -> str | None:
    """`path` relative to `root` (both real, absolute), or None if it is not inside."""
    if path == root:
        return "."
    inside = root.rstrip(os.sep) + os.sep
    return path[len(inside) :] if path.startswith(inside) else None


class LocalFile:
    """Opens a file at an offset; a resume checks it is still the file first opened."""

    def __init__(
        self,
        path: Path,
        name: str,
        root: Path,
        root_label: str = "DATA_DIR",
        refusal: Callable[[Path], str | None] | None = None,
        real_root: str | None = None,
    ) -> None:
        self.path = path
        self.name = name
        self.root = root
        self.root_label = root_label
        self.refusal = refusal
        self.real_root = real_root or os.path.realpath(root)
        self._version: tuple[int, int, int] | None = None
        self.size: int | None = None

    @property
    def version(self) -> str | None:
        return None if self._version is None else ":".join(map(str, self._version))

    def pin(self, version: str | None) -> None:
        """Read only this version (`version` of an earlier reader): a part of a split task
        must see the file its first part saw."""
        if version is not None:
            inode, size, mtime = (int(field) for field in version.split(":"))
            self._version = (inode, size, mtime)

    def check(self, real: Path) -> None:
        """Refuse a file that really is outside the root, or another client's upload."""
        if _below(str(real), self.real_root) is None:
            raise PermanentError(f"{self.name} leads outside {self.root_label}")
        if self.refusal is not None and (refused := self.refusal(real)):
            raise PermanentError(f"{self.name}: {refused}")

    def open_at(self, offset: int) -> _TranslatedFile:
        raw = io.FileIO(self._open_regular(), "rb")
        status = os.fstat(raw.fileno())
        version = (status.st_ino, status.st_size, status.st_mtime_ns)
        if self._version is None:
            self._version = version
        elif version != self._version:
            raw.close()
            raise SourceChanged(f"{self.name} was replaced while it was being read")
        if self.size is None:
            self.size = status.st_size or None  # 0 for a pipe: unknown
        if offset:
            raw.seek(offset)
        return _TranslatedFile(raw, self.name)

    def _open_regular(self) -> int:
        """A descriptor of the regular file at the path, which is inside the root."""
        try:
            self._refuse_unless_regular(os.stat(self.path).st_mode)  # before opening a device
            # O_NONBLOCK: a FIFO swapped in after the stat must not block the open.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except FileNotFoundError:
            where = f"{self.root_label} {os.path.realpath(self.root)}"
            raise PermanentError(f"file not found: {self.name} (in {where})") from None
        except PermissionError:
            raise PermanentError(f"permission denied reading {self.name}") from None
        except OSError as error:
            raise TransientError(f"opening {self.name} failed: {error}") from error
        try:
            opened = os.fstat(fd)
            self._refuse_unless_regular(opened.st_mode)
            self._refuse_unless_inside(opened)
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _refuse_unless_regular(self, mode: int) -> None:
        if stat.S_ISDIR(mode):
            raise PermanentError(f"{self.name} is a directory, not a CSV file")
        if not stat.S_ISREG(mode):
            raise PermanentError(f"{self.name} is not a regular file ({_kind(mode)})")

    def _refuse_unless_inside(self, opened: os.stat_result) -> None:
        """The opened file must be the one its path leads to now, inside the root: a symlink
        swapped in before the open makes the path lead outside, or to another file."""
        real = Path(os.path.realpath(self.path))
        self.check(real)
        try:
            now = os.stat(real)
        except OSError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            raise SourceChanged(f"{self.name} was replaced while it was being opened")


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a file"


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
