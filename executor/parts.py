"""A file's data cut into byte ranges that executors sum apart, and the merge of their sums.

Hadoop's rule makes the cut blind to the content: a line belongs to the part holding its
first byte. A part after the first skips to the first line that starts inside its range,
and every part reads past its end to finish its last line; the header was read once,
before the split (executor/split.py), and the parts share its layout.

A line is not a record: a quoted field may hold newlines, and a part that starts inside
one reads garbage. No part can tell alone, so each counts the quotes of its range (and of
the bytes it skipped): the merge knows from them where every part started. If any started
inside quotes, the task is summed again as one stream; otherwise the sums and row counts
add up exactly to the unsplit ones, and the first part's error (in file order) is the
file's first error, its line counted from the lines of the parts before it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO

from colsum import jsoncodec
from colsum.errors import InvalidCSV
from executor import fastsum, summing
from executor.summing import Opening, PartSums, Sums

QUOTE = ord('"')
NEWLINE = b"\n"
SKIP_READ = 64 << 10


def plan(start: int, size: int, split_size: int) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of about `split_size` (the same size give or take a byte)
    that cover the data from `start` to `size`; one range when there is nothing to split."""
    data = size - start
    if split_size <= 0 or data <= split_size:
        return [(start, size)]
    count = -(-data // split_size)
    step = -(-data // count)
    return [(start + k * step, min(size, start + (k + 1) * step)) for k in range(count)]


class PartReader(io.RawIOBase):
    """The lines of a stream whose first byte lies in [start, end), counting the quotes of
    that range as they pass.

    The stream must begin at `start` for the first part (a line starts there), and at
    `start - 1` for the others: the byte before tells whether a line starts at `start`.
    After an error, `drain` reads what is left of the range, for its quotes."""

    def __init__(self, stream: BinaryIO, start: int, end: int, first: bool) -> None:
        self.stream = stream
        self.start, self.end = start, end
        self._at = start if first else start - 1  # offset of the stream's next byte
        self.line_start: int | None = start if first else None
        self.quotes = 0  # in the bytes of [start, end) read so far
        self.skipped_quotes = 0  # in [start, line_start)
        self._pending = b""  # read while skipping, from line_start on
        self._done = False

    def readable(self) -> bool:
        return True

    @property
    def empty(self) -> bool:
        """No line starts in the range: the part before reads all of it."""
        return self.line_start is not None and self.line_start >= self.end

    def readinto(self, buffer: Any) -> int:
        if self.line_start is None:
            self._skip()
        if self._done or self.empty:
            return 0
        first = self._at - len(self._pending)  # the offset of the byte handed out first
        if self._pending:
            count = min(len(buffer), len(self._pending))
            buffer[:count] = self._pending[:count]
            self._pending = self._pending[count:]
        else:
            count = self._read(buffer)
            if not count:
                self._done = True
                return 0
        # The last line is the one holding byte end - 1: hand out up to its newline.
        if first + count >= self.end:
            view = memoryview(buffer)[:count]
            newline = bytes(view[max(0, self.end - 1 - first) :]).find(NEWLINE)
            if newline != -1:
                count = max(0, self.end - 1 - first) + newline + 1
                self._done = True
                self._pending = b""
        return count

    def _read(self, buffer: Any) -> int:
        """Read from the stream, counting the quotes of the bytes inside the range."""
        count = self.stream.readinto(buffer) or 0
        lo, hi = max(self._at, self.start), min(self._at + count, self.end)
        if hi > lo:
            view = memoryview(buffer)[lo - self._at : hi - self._at]
            self.quotes += fastsum.count_byte(view, QUOTE, hi - lo)
        self._at += count
        return count

    def _skip(self) -> None:
        """Find the first line that starts in the range: after the first newline from
        byte start - 1 on, if that is before the end."""
        block = bytearray(SKIP_READ)
        while True:
            at = self._at
            count = self._read(block)
            if not count:
                self.line_start = self.end  # the file ends before a line starts here
                return
            data = bytes(block[:count])
            newline = data.find(NEWLINE)
            if newline != -1:
                self.line_start = at + newline + 1
                self.skipped_quotes += data.count(b'"', max(0, self.start - at), newline + 1)
                self._pending = data[newline + 1 :]
                return
            self.skipped_quotes += data.count(b'"', max(0, self.start - at))
            if self._at >= self.end:
                self.line_start = self.end
                return

    def drain(self) -> None:
        """Read the rest of the range, so that `quotes` counts all of it."""
        block = bytearray(SKIP_READ)
        while self._at < self.end and self._read(block):
            pass


class Counting(io.RawIOBase):
    """A stream that counts the bytes it hands out: where the header ended, for the split."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self.stream.readinto(buffer) or 0
        self.count += count
        return count


def sum_range(
    reader: PartReader,
    layout: summing.Layout,
    cancel: threading.Event | None = None,
    on_rows: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> PartReport:
    """A part's report: its sums, or the error in its lines, which only the merge can
    tell real (the part may have started inside quotes)."""
    try:
        sums = summing.sum_part(reader, layout, cancel, on_rows, threads)
    except InvalidCSV as error:
        reader.drain()
        return PartReport.of(reader, error=str(error))
    return PartReport.of(reader, sums)


@dataclass(frozen=True)
class PartReport:
    """What a part tells the merge: its quotes, and its sums or its error."""

    quotes: int  # parity of the quotes in its range
    skipped_quotes: int  # ... in the bytes it skipped before its first line
    empty: bool  # no line starts in it
    sums: PartSums | None = None
    error: str | None = None  # naming the line counted from the part's first

    @classmethod
    def of(
        cls, reader: PartReader, sums: PartSums | None = None, error: str | None = None
    ) -> PartReport:
        return cls(reader.quotes % 2, reader.skipped_quotes % 2, reader.empty, sums, error)

    def to_record(self) -> dict[str, str]:
        record = {
            "quotes": str(self.quotes),
            "skipped_quotes": str(self.skipped_quotes),
            "empty": str(int(self.empty)),
        }
        if self.error is not None:
            record["error"] = self.error
        if self.sums is not None:
            record["rows"] = str(self.sums.rows)
            record["lines"] = str(self.sums.lines)
            record["sums"] = jsoncodec.dumps([str(total) for total in self.sums.sums])
        return record

    @classmethod
    def from_record(cls, record: dict[str, str]) -> PartReport:
        sums = None
        if "sums" in record:
            totals = [Decimal(total) for total in jsoncodec.loads(record["sums"])]
            sums = PartSums(int(record["rows"]), int(record["lines"]), totals)
        return cls(
            int(record["quotes"]),
            int(record["skipped_quotes"]),
            record["empty"] == "1",
            sums,
            record.get("error"),
        )


class SumAgain(Exception):
    """A part started inside quotes: the task is to be summed again as one stream."""


def merge(opening: Opening, reports: list[PartReport]) -> Sums:
    """The file's sums from its parts' reports, in file order; InvalidCSV for the file's
    first error, SumAgain if a part started inside quotes (its lines were not records)."""
    inside = 0  # the quotes before a part's range, mod 2
    for report in reports:
        if not report.empty and (inside + report.skipped_quotes) % 2:
            raise SumAgain("a part started inside a quoted field")
        inside += report.quotes
    lines = opening.line - 1  # before the part's first line
    for report in reports:
        if report.error is not None:
            raise InvalidCSV(summing.renumbered(report.error, lines))
        if report.sums is not None:
            lines += report.sums.lines
    return summing.merged(opening, [report.sums for report in reports if report.sums])


def opening_to_record(opening: Opening, version: str | None) -> str:
    """What the parts need to know of the header, and the file's version they must read,
    as the split task's record keeps them."""
    layout = opening.layout
    fields = {
        "width": layout.width,
        "delimiter": layout.delimiter,
        "hint": layout.hint,
        "names": opening.names,
        "line": opening.line,
        "version": version,
    }
    return jsoncodec.dumps(fields)


def opening_from_record(text: str) -> tuple[Opening, str | None]:
    fields = jsoncodec.loads(text)
    layout = summing.Layout(fields["width"], fields["delimiter"], fields["hint"])
    return Opening(layout, fields["names"], fields["line"], b"", False), fields["version"]
