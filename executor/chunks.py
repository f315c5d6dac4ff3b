"""Cutting a CSV byte stream into pieces that each end where a record ends.

A newline ends a record unless it is inside quotes; RFC 4180 escapes a quote inside quotes
by doubling it, so a newline is outside quotes exactly when an even number of quote
characters comes before it. Every piece starts outside quotes, so each can be parsed alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

QUOTE = b'"'
NEWLINE = b"\n"
# No CSV record is this long; an unclosed quote makes the rest of a file look like one.
MAX_RECORD = 64 << 20


class RecordTooLong(ValueError):
    """A record runs on past MAX_RECORD bytes."""


def first_record_end(data: bytes) -> int:
    """The offset just past the first record, or -1 if `data` holds no whole record."""
    quotes = 0
    start = 0
    while (newline := data.find(NEWLINE, start)) != -1:
        quotes += data.count(QUOTE, start, newline)
        if quotes % 2 == 0:
            return newline + 1
        start = newline + 1
    return -1


def last_record_end(data: bytes | bytearray, stop: int | None = None) -> int:
    """The offset just past the last whole record in `data[:stop]`, or -1 if there is none."""
    stop = len(data) if stop is None else stop
    if data.find(QUOTE, 0, stop) == -1:  # the common case, and a search far faster than a count
        return data.rfind(NEWLINE, 0, stop) + 1 or -1
    total = data.count(QUOTE, 0, stop)
    after = 0  # quotes after the newline being looked at
    end = stop
    while (newline := data.rfind(NEWLINE, 0, end)) != -1:
        after += data.count(QUOTE, newline, end)
        if (total - after) % 2 == 0:
            return newline + 1
        end = newline
    return -1


def chunks(stream: BinaryIO, size: int, first: bytes = b"") -> Iterator[bytes]:
    """Pieces of about `size` bytes (more if one record is longer), `first` before the stream.

    The stream is read into one buffer that is used again for every piece, so each byte is
    copied once, into its piece.
    """
    buffer = bytearray(max(size, 2 * len(first)))
    buffer[: len(first)] = first
    filled = len(first)
    while True:
        with memoryview(buffer) as view:
            count = stream.readinto(view[filled:])
        filled += count or 0
        if count and filled < len(buffer):
            continue  # a short read: fill the buffer before cutting it
        end = last_record_end(buffer, filled) if count else filled
        if end == -1:  # one record longer than the buffer
            if len(buffer) >= MAX_RECORD:
                raise RecordTooLong(f"a record longer than {MAX_RECORD >> 20} MiB")
            buffer.extend(bytes(len(buffer)))
            continue
        if end:
            with memoryview(buffer) as view:
                yield bytes(view[:end])
        if not count:
            return
        buffer[: filled - end] = buffer[end:filled]
        filled -= end
