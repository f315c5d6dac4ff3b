"""Cutting a CSV byte stream into pieces that each end where a record ends.

A newline ends a record unless it is inside quotes; RFC 4180 escapes a quote inside quotes
by doubling it, so a newline is outside quotes exactly when an even number of quote
characters comes before it. Every piece starts outside quotes, so each can be parsed alone.

Each byte is scanned a bounded number of times whatever the input: the common cases take
one search, and a run of quoted newlines (a quote left open, say) goes to a numpy scan
of the quote parity instead of a Python loop over its newlines.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from executor import fastsum

QUOTE = b'"'
NEWLINE = b"\n"
# No CSV record is this long; an unclosed quote makes the rest of a file look like one.
MAX_RECORD = 64 << 20
# Newlines the backward search in last_record_end tries before it scans with numpy.
WALK = 64
BLOCK = 1 << 20  # bytes numpy looks at at once: bounds its temporary arrays
PAD = 128  # bytes to spare after a piece, for the fast path: fastsum.PAD


class RecordTooLong(ValueError):
    """A record runs on past MAX_RECORD bytes."""


class FirstRecord:
    """Finds where the first record of a growing buffer ends, looking at each byte once:
    it remembers how far it scanned and whether that point is inside quotes."""

    def __init__(self) -> None:
        self._scanned = 0
        self._quoted = False

    def end(self, data: bytes | bytearray) -> int:
        """The offset just past the first record, or -1 if `data` holds no whole record
        yet; `data` must be the previous call's with more bytes appended."""
        if not self._scanned:  # the common case: no quote before the first newline
            newline = data.find(NEWLINE)
            if newline != -1 and data.find(QUOTE, 0, newline) == -1:
                return newline + 1
        end, self._quoted = _scan(data, self._scanned, len(data), self._quoted, first=True)
        self._scanned = len(data)
        return end


def first_record_end(data: bytes | bytearray) -> int:
    """The offset just past the first record, or -1 if `data` holds no whole record."""
    return FirstRecord().end(data)


def last_record_end(data: bytes | bytearray, stop: int | None = None) -> int:
    """The offset just past the last whole record in `data[:stop]`, or -1 if there is none."""
    stop = len(data) if stop is None else stop
    if data.find(QUOTE, 0, stop) == -1:  # the common case, and a search far faster than a count
        return data.rfind(NEWLINE, 0, stop) + 1 or -1
    total = fastsum.count_byte(data, QUOTE[0], stop)
    after = 0  # quotes after the newline being looked at
    end = stop
    for _ in range(WALK):  # the last record ends within a few newlines, unless one is open
        newline = data.rfind(NEWLINE, 0, end)
        if newline == -1:
            return -1
        after += data.count(QUOTE, newline, end)
        if (total - after) % 2 == 0:
            return newline + 1
        end = newline
    return _scan(data, 0, end, quoted=False, first=False)[0]


def _scan(
    data: bytes | bytearray, start: int, stop: int, quoted: bool, first: bool
) -> tuple[int, bool]:
    """The offset just past the first (or last) newline outside quotes in data[start:stop]
    (-1 if none), and whether `stop` is inside quotes; `quoted` says whether `start` is.

    Vectorised, block by block, so that a megabyte of quoted newlines costs milliseconds."""
    found = -1
    for offset in range(start, stop, BLOCK):
        chars = np.frombuffer(data, np.uint8, min(BLOCK, stop - offset), offset)
        # Parity of the quotes up to each byte (uint8 wraps, parity survives) plus the
        # state at the start of the block: 1 inside quotes.
        inside = (np.cumsum(chars == QUOTE[0], dtype=np.uint8) & 1) ^ quoted
        ends = np.flatnonzero((chars == NEWLINE[0]) & (inside == 0))
        quoted = bool(inside[-1])
        if len(ends):
            found = offset + int(ends[0] if first else ends[-1]) + 1
            if first:
                return found, quoted
    return found, quoted


class BufferPool:
    """Read buffers kept from one file for the next: a fresh 8 MiB bytearray costs its
    zeroing and page faults, about 5 ms, and a file takes one per thread and two more."""

    def __init__(self, size: int, spare: int = 8) -> None:
        self.size = size
        self._spare = spare
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self, count: int) -> Iterator[list[bytearray]]:
        """`count` buffers, given back when the block ends: only then may no piece of
        theirs be in use any more."""
        with self._lock:
            taken = [self._free.pop() for _ in range(min(count, len(self._free)))]
        buffers = taken + [bytearray(self.size) for _ in range(count - len(taken))]
        try:
            yield buffers
        finally:
            with self._lock:
                kept = [b for b in buffers if len(b) == self.size]
                self._free.extend(kept[: self._spare - len(self._free)])


def chunks(
    stream: BinaryIO,
    size: int,
    first: bytes = b"",
    check: Callable[[], None] | None = None,
    buffers: list[bytearray] | None = None,
    cut: Callable[[bytearray, int], int] | None = None,
) -> Iterator[memoryview]:
    """Pieces of about `size` bytes (more if one record is longer), `first` before the stream.

    The stream is read with readinto into `buffers` (default two new ones), used in turn,
    so each byte is copied once, into its piece; a piece stays unchanged while the caller
    holds len(buffers) - 2 more (threads summing them, say). Each buffer keeps PAD bytes to
    spare after any piece, for the fast path; one too small is replaced in the list.
    `check` is called before every read (it may raise to stop). `cut` says where a piece
    may end (default: after the last record, `last_record_end`).
    """
    cut = cut or last_record_end
    capacity = max(size, 2 * len(first))
    buffers = buffers if buffers is not None else [bytearray(), bytearray()]
    if len(buffers) < 2:
        raise ValueError("chunks needs two buffers at least")
    turn = 0
    buffer = _room(buffers, turn, capacity + PAD)
    buffer[: len(first)] = first
    filled = len(first)
    while True:
        if check is not None:
            check()
        with memoryview(buffer) as view:
            count = stream.readinto(view[filled:capacity])
        filled += count or 0
        if count and filled < capacity:
            continue  # a short read: fill the buffer before cutting it
        end = cut(buffer, filled) if count else filled
        if end == -1:  # one record longer than the buffer
            if capacity >= MAX_RECORD:
                raise RecordTooLong(f"a record longer than {MAX_RECORD >> 20} MiB")
            capacity *= 2
            buffer = buffers[turn] = buffer[:filled] + bytes(capacity + PAD - filled)
            continue
        turn = (turn + 1) % len(buffers)
        following = _room(buffers, turn, capacity + PAD)
        following[: filled - end] = buffer[end:filled]  # the start of the next record
        if end:
            yield memoryview(buffer)[:end]
        if not count:
            return
        buffer, filled = following, filled - end


def _room(buffers: list[bytearray], turn: int, size: int) -> bytearray:
    """buffers[turn], replaced by a new one if it is smaller than `size`."""
    if len(buffers[turn]) < size:
        buffers[turn] = bytearray(size)
    return buffers[turn]
