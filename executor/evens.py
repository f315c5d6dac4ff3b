"""The second task type, `sum_even`: the exact sum of the even integers in a text file.

The file is integers separated by whitespace, newlines or commas (runs of them count as
one separator), of up to MAX_DIGITS digits each. As for CSV files, a compiled pass (numba,
releasing the GIL) sums each chunk when it can prove its answer: tokens of at most 18
digits, with an optional sign, summed as int64 with a carry. A chunk with anything else
(a longer integer, a token that is not an integer) goes to the exact path here, Python's
ints, which also names the line of a bad token. Chunks are cut after a separator, so no
token is split.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from numba import njit

from colsum.errors import InvalidNumbers, TaskInterrupted
from executor import fastsum, pipeline
from executor.chunks import PAD, RecordTooLong

CHUNK_SIZE = pipeline.CHUNK_SIZE
TOKEN = re.compile(rb"[+-]?[0-9]+")
SPLIT = re.compile(rb"[ \t\r\v\f,]+")
# At most this many digits an integer, so that the work stays linear in the file's size:
# converting digits to an int costs their square (a million digits take 24 s), and Python
# refuses more than 4300 at once.
MAX_DIGITS = 4000
SHOWN = 80
LIMIT = fastsum.LIMIT
OK, INEXACT = fastsum.OK, fastsum.INEXACT


@dataclass(frozen=True)
class EvenSums:
    count: int  # integers read
    even_count: int
    sum: int  # of the even ones

    def to_result(self) -> dict[str, Any]:
        return {"count": self.count, "even_count": self.even_count, "sum": self.sum}


@njit(nogil=True, cache=True, boundscheck=False)
def _scan(buf, n, out):
    """out = [count, even count, acc, carry, lines]: the sum is carry * LIMIT + acc.
    buf[n] must be a separator. Returns OK, or INEXACT to hand the chunk on."""
    count = 0
    evens = 0
    acc = 0
    carry = 0
    lines = 0
    i = 0
    while i < n:
        c = buf[i]
        if c == 32 or c == 44 or (9 <= c <= 13):
            lines += c == 10
            i += 1
            continue
        negative = c == 45
        if negative or c == 43:
            i += 1
            c = buf[i]
        value = 0
        digits = 0
        significant = 0
        while 48 <= c <= 57:
            value = value * 10 + (c - 48)
            digits += 1
            significant += value != 0
            i += 1
            c = buf[i]
        if digits == 0 or significant > 18:
            return INEXACT  # a sign alone, text, or an integer past int64
        if not (c == 32 or c == 44 or (9 <= c <= 13)):
            return INEXACT  # a token that goes on with something else: 12a, 1.5
        count += 1
        if value % 2 == 0:
            evens += 1
            acc += -value if negative else value
            if acc >= LIMIT:
                acc -= LIMIT
                carry += 1
            elif acc <= -LIMIT:
                acc += LIMIT
                carry -= 1
    out[0] = count
    out[1] = evens
    out[2] = acc
    out[3] = carry
    out[4] = lines
    return OK


@njit(nogil=True, cache=True, boundscheck=False)
def _last_separator(buf, stop):
    for i in range(stop - 1, -1, -1):
        c = buf[i]
        if c == 32 or c == 44 or (9 <= c <= 13):
            return i
    return -1


def last_separator_end(data: bytes | bytearray, stop: int) -> int:
    """The offset just past the last separator in data[:stop], or -1 if there is none:
    where a chunk may end without cutting a token."""
    found = _last_separator(np.frombuffer(data, np.uint8), stop)
    return found + 1 if found != -1 else -1


def sum_even(
    stream: BinaryIO,
    cancel: threading.Event | None = None,
    on_rows: Callable[[int], None] | None = None,
    threads: int | None = None,
    first: bytes = b"",
) -> EvenSums:
    """Count the integers of `stream` (after `first`, read from it already) and sum the
    even ones, exactly. A token that is not an integer raises InvalidNumbers naming its
    line; `on_rows` is told the integers read so far after each chunk; `cancel` is looked
    at between reads and chunks."""
    return sum_part(stream, cancel, on_rows, threads, first).sums


@dataclass(frozen=True)
class EvenPart:
    """The sums of whole lines of a file (a part of a split task: executor/split.py)."""

    sums: EvenSums
    lines: int  # newlines in them: where the next part's lines start


def sum_part(
    stream: BinaryIO,
    cancel: threading.Event | None = None,
    on_rows: Callable[[int], None] | None = None,
    threads: int | None = None,
    first: bytes = b"",
) -> EvenPart:
    """As `sum_even`, with the lines read; an error names the line counting from the
    stream's first (executor/parts.py renumbers it)."""
    summer = _Summer(cancel, on_rows)
    try:
        pipeline.sum_in_order(stream, summer, threads, CHUNK_SIZE, first, last_separator_end)
    except RecordTooLong:
        raise InvalidNumbers(
            f"line {summer.line}: a token longer than 64 MiB: is this a file of integers?"
        ) from None
    return EvenPart(EvenSums(summer.count, summer.evens, summer.total), summer.line - 1)


class _Summer:
    """Chunks summed on any thread, taken in file order so that lines add up."""

    def __init__(
        self, cancel: threading.Event | None, on_rows: Callable[[int], None] | None
    ) -> None:
        self.cancel = cancel
        self.on_rows = on_rows
        self.stopped = False
        self.line = 1
        self.count = self.evens = self.total = 0

    def check(self) -> None:
        if self.stopped:
            raise TaskInterrupted("stopped")
        if self.cancel is not None and self.cancel.is_set():
            raise TaskInterrupted("cancelled")

    def fast(self, piece: memoryview) -> np.ndarray | None:
        self.check()
        n = len(piece)
        buffer = np.frombuffer(piece.obj, np.uint8)
        if len(buffer) < n + PAD:
            raise ValueError("no room for the sentinel after the piece")
        buffer[n] = 32
        out = np.zeros(5, np.int64)
        return out if _scan(buffer, n, out) == OK else None

    def take(self, piece: memoryview, future: Future[np.ndarray | None]) -> None:
        out = future.result()
        if out is None:
            data = bytes(piece)
            count, evens, total = exact_chunk(data, self.line)
            lines = data.count(b"\n")
        else:
            count, evens = int(out[0]), int(out[1])
            total = int(out[3]) * LIMIT + int(out[2])
            lines = int(out[4])
        self.count += count
        self.evens += evens
        self.total += total
        self.line += lines
        if self.on_rows is not None:
            self.on_rows(self.count)


def exact_chunk(data: bytes, first_line: int) -> tuple[int, int, int]:
    """The reference: (integers, even ones, their sum) of a chunk, any size exact."""
    count = evens = total = 0
    for number, line in enumerate(data.split(b"\n"), first_line):
        for token in SPLIT.split(line):
            if not token:
                continue
            if not TOKEN.fullmatch(token):
                raise InvalidNumbers(f"line {number}: {_shown(token)} is not an integer")
            if len(token.lstrip(b"+-0")) > MAX_DIGITS:
                raise InvalidNumbers(
                    f"line {number}: an integer of {len(token.lstrip(b'+-0')):,} digits;"
                    f" at most {MAX_DIGITS:,}"
                )
            count += 1
            if token[-1] in b"02468":
                evens += 1
                total += int(token)
    return count, evens, total


def _shown(token: bytes) -> str:
    text = token.decode("utf-8", "replace")
    if len(text) <= SHOWN:
        return repr(text)
    return f"{text[:SHOWN]!r}... ({len(text)} characters)"


def warm() -> None:
    """Compile the kernels, or load them from numba's cache, before a task needs them."""
    sum_even(io.BytesIO(b"1 2\n"), threads=1)
