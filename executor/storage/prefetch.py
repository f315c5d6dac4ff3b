"""Reading ahead on a thread, so that downloading and parsing overlap."""

from __future__ import annotations

import contextvars
import io
import queue
import threading

from colsum.errors import TaskInterrupted

CHUNK = 1 << 20
AHEAD = 8  # chunks buffered at most: 8 MiB per task
CANCEL_CHECK = 0.2  # seconds between two looks at the cancel event while waiting


class PrefetchReader(io.RawIOBase):
    """Wraps a reader: a daemon thread reads up to AHEAD chunks ahead of the caller.

    Socket reads and TLS release the GIL, so the download proceeds while the parser holds
    it. An error on the thread reaches the caller at the point in the stream where it
    happened; closing the reader stops the thread.
    """

    def __init__(
        self,
        inner: io.RawIOBase,
        chunk: int = CHUNK,
        ahead: int = AHEAD,
        cancel: threading.Event | None = None,
    ) -> None:
        self._inner = inner
        self._cancel = cancel
        self._chunk = chunk
        self._queue: queue.Queue[bytearray | BaseException] = queue.Queue(maxsize=ahead)
        self._stopped = threading.Event()
        self._pending = memoryview(b"")
        self._finished = False
        # In the caller's context, so that its log lines keep the task's id.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._fill,), name="prefetch", daemon=True
        )
        self._thread.start()

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        try:
            while not self._stopped.is_set():
                # readinto a fresh buffer: read() would copy each chunk once more.
                buffer = bytearray(self._chunk)
                count = self._inner.readinto(buffer) or 0
                del buffer[count:]
                self._put(buffer)
                if not count:
                    return
        except BaseException as error:
            self._put(error)
        finally:
            # Closed here, not in close(): the caller must not wait for a read in flight.
            self._inner.close()

    def _put(self, item: bytearray | BaseException) -> None:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readinto(self, buffer) -> int:
        if not self._pending:
            if self._finished:
                return 0
            item = self._next()
            if isinstance(item, BaseException):
                self._finished = True
                raise item
            if not item:
                self._finished = True
                return 0
            self._pending = memoryview(item)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _next(self) -> bytearray | BaseException:
        """The next chunk; a slow network read must not hold a cancelled task's thread."""
        while True:
            try:
                return self._queue.get(timeout=CANCEL_CHECK)
            except queue.Empty:
                if self._cancel is not None and self._cancel.is_set():
                    raise TaskInterrupted("cancelled while waiting for the storage") from None

    def close(self) -> None:
        self._stopped.set()
        super().close()
