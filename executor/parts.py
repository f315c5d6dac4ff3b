"""A file's data cut into byte ranges that executors sum apart, and the merge of their sums.

Hadoop's rule makes the cut blind to the content: a line belongs to the part holding its
first byte. A part after the first skips to the first line that starts inside its range,
and every part reads past its end to finish its last line; the header was read once,
before the split (executor/split.py), and the parts share its layout.

A line is not a record: a quoted field may hold newlines, and a part that starts inside
one reads garbage. No part can tell alone, so each counts the quotes of its range (and of
the bytes it skipped): the merge knows from them where every part started. The parity of
the quotes before a byte tells whether it is inside quotes only where every quote follows
RFC 4180 (opening a field, closing it, or doubled inside it): a quote inside an unquoted
field (`a"b`) is a character to the csv module, yet flips the parity. So each part also
follows the quoting of its lines from their start and reports such a stray quote. Going
through the parts in file order, the first that started inside quotes or holds a stray
quote has the task summed again as one stream (the parts before it started where the
parity says); the first with an error gives the file's first error, its line counted from
the lines of the parts before it (unless the part after it started inside quotes: its
last record may have gone on there). Otherwise the sums and row counts add up exactly to
those of one stream.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO

import numpy as np
from numba import njit

from colsum import jsoncodec
from colsum.errors import InvalidCSV, InvalidNumbers, PermanentError
from executor import fastsum, summing
from executor.evens import EvenPart, EvenSums
from executor.summing import Opening, PartSums, Sums

# What a part's lines sum to: a CSV's sums, or a file of integers'.
Summed = PartSums | EvenPart
QUOTE = ord('"')
NEWLINE = b"\n"
SKIP_READ = 64 << 10
# Where the quoting of a part's lines stands: at a field's start, in an unquoted field, in
# a quoted one, just after a quote in a quoted one (closing it, or the first of two); STRAY
# once a quote broke RFC 4180.
FIELD, UNQUOTED, QUOTED, QUOTE_IN_QUOTED, STRAY = range(5)


@njit(nogil=True, cache=True, boundscheck=False)
def _quoting(buf, n, delimiter, state):
    """The quoting state after buf[:n] from `state` (see FIELD): a byte at a time, for the
    pieces that hold quotes."""
    for i in range(n):
        c = buf[i]
        if state == QUOTED:
            if c == 34:
                state = QUOTE_IN_QUOTED
        elif state == QUOTE_IN_QUOTED:
            if c == 34:
                state = QUOTED
            elif c == delimiter or c == 10:
                state = FIELD
            elif c == 13:
                state = UNQUOTED
            else:
                return STRAY  # text after a closing quote
        elif state == FIELD:
            if c == 34:
                state = QUOTED
            elif c != delimiter and c != 10:
                state = UNQUOTED
        elif c == 34:
            return STRAY  # a quote inside an unquoted field
        elif c == delimiter or c == 10:
            state = FIELD
    return state


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

    def __init__(
        self, stream: BinaryIO, start: int, end: int, first: bool, delimiter: str | None = None
    ) -> None:
        """`delimiter`: a CSV's, to follow the quoting of the lines handed out (`stray`)."""
        self.stream = stream
        self._delimiter = ord(delimiter) if delimiter is not None else None
        self._quoting = FIELD
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
    def stray(self) -> bool:
        """A quote in the lines handed out broke RFC 4180, as if they began outside quotes."""
        return self._quoting == STRAY

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
        if self._delimiter is not None and self._quoting != STRAY:
            self._follow_quoting(memoryview(buffer)[:count])
        return count

    def _follow_quoting(self, piece: memoryview) -> None:
        """Byte by byte only where there are quotes: elsewhere the last byte tells."""
        state = self._quoting
        if not len(piece):
            return
        if state == QUOTE_IN_QUOTED or fastsum.count_byte(piece, QUOTE, len(piece)):
            state = _quoting(np.frombuffer(piece, np.uint8), len(piece), self._delimiter, state)
        elif state != QUOTED:  # no quote: a field starts after the last byte, or goes on
            state = FIELD if piece[-1] in (self._delimiter, 10) else UNQUOTED
        self._quoting = state

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


def sum_range(reader: PartReader, sum_lines: Callable[[PartReader], Summed]) -> PartReport:
    """A part's report: what `sum_lines` made of its lines (summing.sum_part for a CSV,
    evens.sum_part for integers), or their error, which only the merge can tell real (the
    part may have started inside quotes)."""
    try:
        sums = sum_lines(reader)
    except (InvalidCSV, InvalidNumbers) as error:
        reader.drain()
        return PartReport.of(reader, error=str(error))
    return PartReport.of(reader, sums)


@dataclass(frozen=True)
class PartReport:
    """What a part tells the merge: its quotes, and its sums or its error."""

    quotes: int  # parity of the quotes in its range
    skipped_quotes: int  # ... in the bytes it skipped before its first line
    empty: bool  # no line starts in it
    sums: Summed | None = None
    error: str | None = None  # naming the line counted from the part's first
    stray: bool = False  # a quote in its lines broke RFC 4180 (see the module docstring)

    @classmethod
    def of(
        cls, reader: PartReader, sums: Summed | None = None, error: str | None = None
    ) -> PartReport:
        quotes, skipped = reader.quotes % 2, reader.skipped_quotes % 2
        return cls(quotes, skipped, reader.empty, sums, error, reader.stray)

    def to_record(self) -> dict[str, str]:
        record = {
            "quotes": str(self.quotes),
            "skipped_quotes": str(self.skipped_quotes),
            "empty": str(int(self.empty)),
            "stray": str(int(self.stray)),
        }
        if self.error is not None:
            record["error"] = self.error
        if isinstance(self.sums, PartSums):
            record["rows"] = str(self.sums.rows)
            record["sums"] = jsoncodec.dumps([str(total) for total in self.sums.sums])
        elif isinstance(self.sums, EvenPart):
            found = self.sums.sums
            record |= {"count": found.count, "even_count": found.even_count, "sum": found.sum}
        if self.sums is not None:
            record["lines"] = str(self.sums.lines)
        return {name: str(value) for name, value in record.items()}

    @classmethod
    def from_record(cls, record: dict[str, str]) -> PartReport:
        sums: Summed | None = None
        if "sums" in record:
            totals = [Decimal(total) for total in jsoncodec.loads(record["sums"])]
            sums = PartSums(int(record["rows"]), int(record["lines"]), totals)
        elif "even_count" in record:
            found = EvenSums(int(record["count"]), int(record["even_count"]), int(record["sum"]))
            sums = EvenPart(found, int(record["lines"]))
        return cls(
            int(record["quotes"]),
            int(record["skipped_quotes"]),
            record["empty"] == "1",
            sums,
            record.get("error"),
            record["stray"] == "1",
        )


class SumAgain(Exception):
    """A part started inside quotes: the task is to be summed again as one stream."""


def merge(opening: Opening, reports: list[PartReport]) -> Sums:
    """A CSV's sums from its parts' reports, in file order; InvalidCSV for the file's
    first error, SumAgain if a part started inside quotes (its lines were not records)."""
    inside, starts = 0, []  # the quotes before a part's range, mod 2; where parts start
    for report in reports:
        starts.append(not report.empty and (inside + report.skipped_quotes) % 2 == 1)
        inside += report.quotes
    for index, report in enumerate(reports):
        if starts[index]:
            raise SumAgain("a part started inside a quoted field")
        if report.stray:
            raise SumAgain("a quote inside an unquoted field")
        if report.error is not None:
            following = [k for k in range(index + 1, len(reports)) if not reports[k].empty]
            if following and starts[following[0]]:  # its last record may go on there
                raise SumAgain("the part after an error started inside a quoted field")
            break
    found = _in_order(reports, opening.line, InvalidCSV)
    return summing.merged(opening, [sums for sums in found if isinstance(sums, PartSums)])


def merge_evens(reports: list[PartReport]) -> EvenSums:
    """A file of integers' sums from its parts' reports, in file order; InvalidNumbers for
    its first error. No quotes: a token never holds a newline."""
    found = [sums.sums for sums in _in_order(reports, 1, InvalidNumbers)]
    count, evens = sum(f.count for f in found), sum(f.even_count for f in found)
    return EvenSums(count, evens, sum(f.sum for f in found))


def _in_order(
    reports: list[PartReport], first_line: int, error: type[PermanentError]
) -> list[Summed]:
    """The parts' sums; the first error in the file, its line counted in the file."""
    lines = first_line - 1  # before the part's first line
    for report in reports:
        if report.error is not None:
            raise error(summing.renumbered(report.error, lines))
        if report.sums is not None:
            lines += report.sums.lines
    return [report.sums for report in reports if report.sums is not None]


def opening_to_record(opening: Opening | None, version: str | None) -> str:
    """What the parts need to know of the header (None: a file of integers has none), and
    the file's version they must read, as the split task's record keeps them."""
    if opening is None:
        return jsoncodec.dumps({"version": version})
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


def opening_from_record(text: str) -> tuple[Opening | None, str | None]:
    fields = jsoncodec.loads(text)
    if "width" not in fields:
        return None, fields["version"]
    layout = summing.Layout(fields["width"], fields["delimiter"], fields["hint"])
    return Opening(layout, fields["names"], fields["line"], b"", False), fields["version"]


def warm() -> None:
    """Compile the quoting scan, or load it from numba's cache, before a part needs it."""
    _quoting(np.frombuffer(b'"a""b",c\n', np.uint8), 9, ord(","), FIELD)
