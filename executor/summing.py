"""The arithmetic: exact sums of every 10th column of a CSV stream, in bounded memory.

`sum_columns` is all the executor calls. It reads the first record itself (the header
question), then cuts the rest into chunks of whole records; each chunk is summed by the
fast path (a compiled kernel, on as many threads as CPUs) when that can prove its answer
exact, else by the exact path here (Python's csv module and Decimal), which is also the one
that names the line and column of an error. Both add exactly, so the sums do not depend on
which path ran or on where the chunks were cut.

Whatever the input, the work is linear in its size and bounded in memory: a cell is at
most MAX_DIGITS digits with an exponent within MAX_EXPONENT, a result at most MAX_COLUMNS
sums and MAX_RESULT bytes, a record at most MAX_RECORD bytes.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any, BinaryIO

from colsum import jsoncodec
from colsum.errors import InvalidCSV, PermanentError, TaskInterrupted
from executor import chunks as records
from executor import fastsum, pipeline
from executor.chunks import FirstRecord, RecordTooLong

EVERY = fastsum.EVERY
CHUNK_SIZE = pipeline.CHUNK_SIZE
FIRST_READ = 64 << 10
BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-32's begin the same way

# What a summed cell may be, so that no sum grows beyond a few thousand digits: at most
# MAX_DIGITS significant digits, and an adjusted exponent (the power of ten of its first
# digit, 2 for 123.4) between -MAX_EXPONENT and MAX_EXPONENT.
MAX_DIGITS = 1000
MAX_EXPONENT = 1000
# What a result may be: it is stored in Redis and served whole on every GET.
MAX_COLUMNS = 20_000  # summed columns, for a row of up to 200,009 fields
MAX_RESULT = 4 << 20  # bytes of the result as JSON
SHOWN = 80  # characters of a cell that an error message echoes
CHECK_EVERY = 4096  # records the exact path reads between two looks at `cancel`
LONE_CR = "a carriage return (CR) that is not followed by a newline: end lines with LF or CRLF"
# A file sent with the wrong delimiter reads as one field a row; these may split it.
DELIMITERS = (",", ";", "\t", "|")

# Decimal's default context rounds to 28 digits; this one is wide enough for any sum of
# parsed cells, and traps Inexact so that a rounding could never pass silently.
EXACT = Context(prec=10**9, Emax=10**9, Emin=-(10**9), traps=[Inexact, InvalidOperation])

# The csv module's own bound (128 KiB a field) would fail a long text field that the fast
# path reads fine; MAX_RECORD bounds every field already.
csv.field_size_limit(records.MAX_RECORD)


@dataclass(frozen=True)
class ColumnSum:
    column: int  # 1-based, as a user counts
    name: str | None
    sum: Decimal


@dataclass(frozen=True)
class Sums:
    rows: int
    columns: list[ColumnSum]

    def to_result(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "columns": [
                {"column": c.column, "name": c.name, "sum": exact_number(c.sum)}
                for c in self.columns
            ],
        }


@dataclass(frozen=True)
class Layout:
    """What every record must look like, as the first record set it."""

    width: int
    delimiter: str
    hint: str | None = None  # for a one-field first row: a delimiter that splits it

    @property
    def indexes(self) -> range:
        return range(EVERY - 1, self.width, EVERY)


def exact_number(value: Decimal) -> int | Decimal:
    """The sum as JSON shows it: integers as ints, others without trailing zeros, so that
    the same sum reads the same whichever path computed it (1.50 + 2.50 reads 4)."""
    with localcontext(EXACT):
        if value == value.to_integral_value():
            return int(value)
        return value.normalize()


def parse_number(cell: str) -> Decimal | None:
    """The cell's exact value; None for an empty cell. ValueError if it is not a number."""
    # Decimal also reads digits of other scripts (Arabic-Indic, full-width), NaN, Infinity
    # and 1_000, which no CSV writer means as a number.
    if not cell.isascii():
        raise ValueError(cell)
    try:
        value = Decimal(cell)
    except InvalidOperation:
        if cell.strip():
            raise ValueError(cell) from None
        return None
    if not value.is_finite() or "_" in cell:
        raise ValueError(cell)
    return value


def sum_columns(
    stream: BinaryIO,
    header: bool | None = None,
    delimiter: str = ",",
    cancel: threading.Event | None = None,
    on_rows: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> Sums:
    """Sum columns 10, 20, 30, ... of a CSV.

    `header`: True or False forces it; None takes the first record as a header when one of
    its summed cells is not a number, or, in a file without summed columns, when it is all
    text over a record with numbers (see `_looks_like_a_header`). Blank lines are skipped.
    A cell that is not a number or a record of another width raises InvalidCSV naming the
    line as an editor numbers it.
    `on_rows` is told the rows summed so far after each chunk. `threads` sum chunks side
    by side (default: one for each CPU this process may use).

    Cancelling: whatever the input, once `cancel` is set this raises TaskInterrupted within
    about a second (it looks at the event between reads, between chunks and every
    CHECK_EVERY records of the exact path), leaving no work running behind it. The worker
    relies on this to stop a task on DELETE or at its time limit.
    """
    opening = open_csv(stream, header, delimiter, cancel)
    if opening is None:
        return Sums(rows=0, columns=[])
    return sum_opened(stream, opening, cancel, on_rows, threads)


def sum_opened(
    stream: BinaryIO,
    opening: Opening,
    cancel: threading.Event | None = None,
    on_rows: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> Sums:
    """Sum the rest of a stream whose first record `open_csv` read."""
    layout, names = opening.layout, opening.names
    summer = _ChunkSummer(layout, opening.line, _checker(cancel), on_rows)
    with localcontext(EXACT):
        if opening.whole:  # the file was read whole already: no threads, no buffers
            if opening.rest:
                piece = fastsum.padded(opening.rest)
                summer.take(piece, summer.fast(piece))
        else:
            _sum_stream(stream, opening.rest, summer, threads)
        sums = summer.sums()
    return _check_size(_sums(layout, names, summer.rows, sums))


@dataclass(frozen=True)
class Opening:
    """What the first record of a CSV tells: the rest is data of this layout."""

    layout: Layout
    names: list[str | None]
    line: int  # the line the data starts on
    rest: bytes  # the bytes read past the header: the start of the data
    whole: bool  # `rest` is all there is


def open_csv(
    stream: BinaryIO,
    header: bool | None = None,
    delimiter: str = ",",
    cancel: threading.Event | None = None,
) -> Opening | None:
    """Read the first record (the header question: see `sum_columns`); None for a file
    without one. A split task (executor/split.py) reads it once, here, for all its parts."""
    _check_delimiter(delimiter)
    start, end, line, whole = _first_record(stream, _checker(cancel))
    if not start:
        return None
    record = start[:end] if end != -1 else start
    first = _parse_record(record, delimiter, line)
    layout = _layout(first, delimiter, line)
    if header is None:
        header = _looks_like_a_header(first, layout.indexes, start[len(record) :], delimiter)
    names = [first[i] if header else None for i in layout.indexes]
    if header:
        start, line = start[len(record) :], line + record.count(b"\n")
    _check_size(_sums(layout, names, 0, [Decimal(0)] * len(names)))  # before a long read
    return Opening(layout, names, line, start, whole)


@dataclass(frozen=True)
class PartSums:
    """The sums of a part of a file's data (executor/split.py), to be merged."""

    rows: int
    lines: int  # newlines in the part: where the next part's lines start
    sums: list[Decimal]


def sum_part(
    stream: BinaryIO,
    layout: Layout,
    cancel: threading.Event | None = None,
    on_rows: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> PartSums:
    """Sum a stream of whole lines of a file's data, laid out as its first record says.
    An InvalidCSV names the line counting from 1 at the stream's first: only the merge
    knows the lines before it (`renumbered`)."""
    summer = _ChunkSummer(layout, 1, _checker(cancel), on_rows)
    with localcontext(EXACT):
        _sum_stream(stream, b"", summer, threads)
        sums = summer.sums()
    return PartSums(summer.rows, summer.line - 1, sums)


def merged(opening: Opening, parts: list[PartSums]) -> Sums:
    """The file's sums from its parts', exact as if it had been summed in one stream."""
    totals = [Decimal(0)] * len(opening.names)
    with localcontext(EXACT):
        for part in parts:
            totals = [a + b for a, b in zip(totals, part.sums, strict=True)]
    rows = sum(part.rows for part in parts)
    return _check_size(_sums(opening.layout, opening.names, rows, totals))


def renumbered(message: str, lines_before: int) -> str:
    """A part's error message, its line counted in the file: every message that names a
    line starts with `line N`."""
    head = message.removeprefix("line ")
    digits = len(head) - len(head.lstrip("0123456789"))
    if not message.startswith("line ") or not digits:
        return message
    number, rest = int(head[:digits]), head[digits:]
    return f"line {number + lines_before}{rest}"


def _sum_stream(stream: BinaryIO, start: bytes, summer: _ChunkSummer, threads: int | None) -> None:
    try:
        pipeline.sum_in_order(stream, summer, threads, CHUNK_SIZE, start)
    except RecordTooLong as error:
        raise InvalidCSV(f"line {summer.line}: {error}; is a quote left open?") from None


def _checker(cancel: threading.Event | None) -> Callable[[], None]:
    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise TaskInterrupted("cancelled")

    return check


def _check_delimiter(delimiter: str) -> None:
    # The spec allows one ASCII character; this guards every other way in: the chunking
    # and the fast path's kernel take the delimiter as one byte.
    if len(delimiter) != 1 or not delimiter.isascii() or delimiter in '"\r\n':
        raise PermanentError(
            f"delimiter {delimiter!r} is not allowed: use one ASCII character, "
            "not a quote or a line end"
        )


def _layout(first: list[str], delimiter: str, line: int) -> Layout:
    summed = len(range(EVERY - 1, len(first), EVERY))
    if summed > MAX_COLUMNS:
        raise InvalidCSV(
            f"line {line}: {len(first)} fields, {summed} columns to sum; "
            f"at most {MAX_COLUMNS} ({MAX_COLUMNS * EVERY + EVERY - 1} fields)"
        )
    hint = None
    if len(first) == 1:
        splits = {d: first[0].count(d) for d in DELIMITERS if d != delimiter}
        best = max(splits, key=lambda d: splits[d])
        hint = best if splits[best] else None
        if splits[best] + 1 >= EVERY:  # that delimiter gives columns to sum; this one none
            raise InvalidCSV(
                f"line {line}: one field, which {best!r} splits into {splits[best] + 1}: "
                f'is the delimiter {best!r}? (give it as "delimiter")'
            )
    return Layout(width=len(first), delimiter=delimiter, hint=hint)


def _sums(layout: Layout, names: list[str | None], rows: int, totals: list[Decimal]) -> Sums:
    columns = [
        ColumnSum(column=i + 1, name=name, sum=total)
        for i, name, total in zip(layout.indexes, names, totals, strict=True)
    ]
    return Sums(rows=rows, columns=columns)


def _check_size(sums: Sums) -> Sums:
    size = len(jsoncodec.dumps(sums.to_result()))
    if size > MAX_RESULT:
        raise InvalidCSV(
            f"the result would be {size} bytes of JSON, at most {MAX_RESULT}: "
            "are the header names or the sums very long?"
        )
    return sums


class _ChunkSummer:
    """Sums chunks: the fast path on any thread, then each chunk taken in file order, when
    the line it starts on is known for the exact path's messages."""

    def __init__(
        self,
        layout: Layout,
        first_line: int,
        check: Callable[[], None],
        on_rows: Callable[[int], None] | None,
    ) -> None:
        self.layout = layout
        self.line = first_line  # the line the next chunk starts on
        self.rows = 0
        self._cancelled = check
        self._on_rows = on_rows
        self._fast = fastsum.Totals(len(layout.indexes))
        self._exact = [Decimal(0)] * len(layout.indexes)
        self.stopped = False  # set when the reading thread stopped: drop chunks in hand

    def check(self) -> None:
        if self.stopped:
            raise TaskInterrupted("stopped")
        self._cancelled()

    def fast(self, piece: memoryview) -> fastsum.ChunkSums | None:
        self.check()
        return fastsum.sum_chunk(piece, self.layout.width, self.layout.delimiter)

    def take(
        self, piece: memoryview, fast: Future[fastsum.ChunkSums | None] | fastsum.ChunkSums | None
    ) -> None:
        """Add a chunk's sums, from the fast path or, where it stepped aside, the exact one."""
        if isinstance(fast, Future):
            fast = fast.result()
        if fast is not None:
            self._fast.add(fast)
            rows, lines = fast.rows, fast.lines
        else:
            data = bytes(piece)
            rows, sums = exact_chunk(data, self.line, self.layout, self.check)
            self._exact = [a + b for a, b in zip(self._exact, sums, strict=True)]
            lines = data.count(b"\n")
        self.rows += rows
        self.line += lines
        if self._on_rows is not None:
            self._on_rows(self.rows)

    def sums(self) -> list[Decimal]:
        return [a + b for a, b in zip(self._fast.decimals(), self._exact, strict=True)]


def exact_chunk(
    data: bytes, first_line: int, layout: Layout, check: Callable[[], None] | None = None
) -> tuple[int, list[Decimal]]:
    """The reference: every record through Python's csv module, every cell through Decimal.

    `check` is called every CHECK_EVERY records (it may raise to stop)."""
    # Only summed cells must be numbers; bytes that are not UTF-8 elsewhere (a Latin-1
    # name, say) do not matter, and in a summed cell they fail it as not a number.
    reader = _reader(data, layout.delimiter, "surrogateescape")
    indexes = layout.indexes
    totals = [Decimal(0)] * len(indexes)
    rows = 0
    line = first_line
    with localcontext(EXACT):
        try:
            for count, row in enumerate(reader, 1):
                if row:
                    _check_width(row, layout, line)
                    for slot, i in enumerate(indexes):
                        totals[slot] += _cell_value(row[i], line, i)
                    rows += 1
                line = first_line + reader.line_num
                if check is not None and not count % CHECK_EVERY:
                    check()
        except csv.Error as error:
            raise _malformed(line, error) from None
    return rows, totals


def _reader(data: bytes, delimiter: str, errors: str) -> Any:
    # Decoded line by line: a 64 MiB record costs one line's text, not the whole chunk's
    # text again (and StringIO's 4 bytes a character on top). newline="\n": only LF ends
    # a line, so that line_num counts lines as the chunks (and an editor) do, and a lone
    # CR outside quotes is an error here, as in the fast path.
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors=errors, newline="\n")
    return csv.reader(text, delimiter=delimiter, strict=True)


def _malformed(line: int, error: csv.Error) -> InvalidCSV:
    if "new-line character seen in unquoted field" in str(error):
        return InvalidCSV(f"line {line}: {LONE_CR}")
    return InvalidCSV(f"line {line}: malformed CSV ({error})")


def _cell_value(cell: str, line: int, index: int) -> Decimal:
    try:
        value = parse_number(cell)
    except ValueError:
        raise InvalidCSV(
            f"line {line}, column {index + 1}: {_shown(cell)} is not a number"
        ) from None
    if value is None:
        return Decimal(0)
    if abs(value.adjusted()) > MAX_EXPONENT or (
        len(cell) > MAX_DIGITS and len(value.as_tuple().digits) > MAX_DIGITS
    ):
        raise InvalidCSV(
            f"line {line}, column {index + 1}: {_shown(cell)} is out of range: "
            f"at most {MAX_DIGITS} digits and exponents up to {MAX_EXPONENT}"
        )
    return value


def _shown(cell: str) -> str:
    """The cell as a message quotes it: a long one cut, so that a message stays a line."""
    if len(cell) <= SHOWN:
        return repr(cell)
    return f"{cell[:SHOWN]!r}... ({len(cell)} characters)"


def _check_width(row: list[str], layout: Layout, line: int) -> None:
    if len(row) != layout.width:
        fields = "field" if layout.width == 1 else "fields"
        hint = f" — is the delimiter {layout.hint!r}?" if layout.hint else ""
        raise InvalidCSV(
            f"line {line}: expected {layout.width} {fields} like the first row, "
            f"found {len(row)}{hint}"
        )


def _first_record(stream: BinaryIO, check: Callable[[], None]) -> tuple[bytes, int, int, bool]:
    """The start of the file from its first non-blank line, the offset just past its first
    record (-1: the file ends first), that line's number, and whether that is the whole
    file. Each byte is scanned once, so a quote left open costs a read of MAX_RECORD."""
    data = stream.read(FIRST_READ)  # small: most tasks in a busy queue are small files
    whole = len(data) < FIRST_READ  # a short read: the end of the file
    _check_text(data)
    data = data.removeprefix(BOM)
    line = 1
    while True:  # blank lines before the first record
        stripped = data.lstrip(b"\r\n")
        line += data.count(b"\n", 0, len(data) - len(stripped))
        if stripped or whole:
            break
        check()
        data = stream.read(FIRST_READ)
        whole = len(data) < FIRST_READ
    buffer = bytearray(stripped)
    scanner = FirstRecord()
    while (end := scanner.end(buffer)) == -1 and not whole:
        if len(buffer) > records.MAX_RECORD:
            if buffer.count(b"\r") > buffer.count(b"\r\n"):
                raise InvalidCSV(f"line {line}: {LONE_CR}")
            limit = records.MAX_RECORD >> 20
            raise InvalidCSV(
                f"line {line}: a record longer than {limit} MiB; is a quote left open?"
            )
        check()
        more = stream.read(FIRST_READ)
        whole = len(more) < FIRST_READ
        buffer += more
    return bytes(buffer), end, line, whole


def _check_text(data: bytes) -> None:
    """A NUL byte in the first read is not text (UTF-8 and Latin-1 text never holds one;
    compressed files, spreadsheets and UTF-16 text almost always do early on)."""
    if data.startswith(UTF16_BOMS):
        raise InvalidCSV("not a CSV file Colsum reads: UTF-16 text; save it as UTF-8")
    nul = data.find(b"\0")
    if nul != -1:
        raise InvalidCSV(f"not a CSV file: binary bytes at offset {nul}")


def _parse_record(record: bytes, delimiter: str, line: int) -> list[str]:
    try:
        return next(_reader(record, delimiter, "replace"))
    except csv.Error as error:
        raise _malformed(line, error) from None


def _looks_like_a_header(first: list[str], summed: range, rest: bytes, delimiter: str) -> bool:
    """A summed cell that is not a number says so at once. A file without one to tell (9
    columns, say) has a header when its first record is all text and some of that text has
    a number below it, as csv.Sniffer weighs columns: a data row holds numbers beside its
    names and dates, and one cell of text (`N/A`) among numbers is no header. A file of one
    record is a header if it is all text."""
    if any(_is_not_number(first[i]) for i in summed):
        return True
    cells = [i for i, cell in enumerate(first) if cell.strip()]
    if not cells or any(not _is_not_number(first[i]) for i in cells):
        return False
    rest = rest.lstrip(b"\r\n")
    if not rest:
        return True
    end = FirstRecord().end(bytearray(rest))
    try:
        second = next(_reader(rest[:end] if end != -1 else rest, delimiter, "replace"))
    except (csv.Error, StopIteration):
        return False  # the summing finds and names what is wrong with it
    return len(second) == len(first) and any(
        second[i].strip() and not _is_not_number(second[i]) for i in cells
    )


def _is_not_number(cell: str) -> bool:
    try:
        parse_number(cell)
    except ValueError:
        return True
    return False
