"""Chunks summed side by side, taken in file order: what both engines do with a stream.

The stream is cut into pieces (executor/chunks.py) read into buffers lent from one pool;
each piece goes to `summer.fast` on one of `threads` threads (the compiled kernels release
the GIL), while this thread reads the next; results are handed to `summer.take` in file
order, so that the line a piece starts on is known to the exact path's messages.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Protocol

from executor.chunks import PAD, BufferPool, RecordTooLong, chunks

CHUNK_SIZE = 8 << 20
BUFFERS = BufferPool(CHUNK_SIZE + PAD)
# Threads by default: the CPUs this process may use.
THREADS = len(os.sched_getaffinity(0))


class Summer(Protocol):
    stopped: bool  # set when reading stopped: pieces not started yet are dropped

    def check(self) -> None: ...  # raises to stop (a cancel)

    def fast(self, piece: memoryview) -> Any: ...  # on any thread

    def take(self, piece: memoryview, fast: Future[Any]) -> None: ...  # in file order


def sum_in_order(
    stream: BinaryIO,
    summer: Summer,
    threads: int | None = None,
    size: int = CHUNK_SIZE,
    first: bytes = b"",
    cut: Callable[[bytearray, int], int] | None = None,
) -> None:
    """Raises what `take` raises, and RecordTooLong (after taking the pieces before it,
    whose errors come first) for the caller to word. `threads`: THREADS when None or 0."""
    threads = threads if threads and threads > 0 else THREADS
    pending: deque[tuple[memoryview, Future[Any]]] = deque()
    with (
        BUFFERS.lend(threads + 2) as buffers,  # one a thread, one read into, one for its tail
        ThreadPoolExecutor(threads, thread_name_prefix="sum") as pool,
    ):
        try:
            for piece in chunks(stream, size, first, summer.check, buffers, cut):
                pending.append((piece, pool.submit(summer.fast, piece)))
                if len(pending) > threads:
                    summer.take(*pending.popleft())
            while pending:
                summer.take(*pending.popleft())
        except RecordTooLong:
            while pending:
                summer.take(*pending.popleft())
            raise
        except BaseException:
            summer.stopped = True
            raise
