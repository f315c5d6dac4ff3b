"""The arithmetic: exact sums of every 10th column of a CSV stream, in bounded memory.

`sum_columns` is all the executor calls. It reads the first record itself (the header
question), then cuts the rest into chunks of whole records; each chunk is summed by the
fast path (Polars, on all cores) when that can prove its answer exact, else by the exact
path here (Python's csv module and Decimal), which is also the one that names the line and
column of an error. Both add exactly, so the sums do not depend on which path ran or on
where the chunks were cut.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any, BinaryIO

from colsum.errors import InvalidCSV, TaskInterrupted
from executor import fastsum
from executor.chunks import MAX_RECORD, RecordTooLong, chunks, first_record_end

EVERY = 10
CHUNK_SIZE = 8 << 20
# Below this, Polars' fixed cost (about 0.6 ms a call) exceeds what it saves.
SMALL_CHUNK = 64 << 10
FIRST_READ = 64 << 10
BOM = b"\xef\xbb\xbf"

# Decimal's default context rounds to 28 digits; this one is wide enough for any sum of
# parsed cells, and traps Inexact so that a rounding could never pass silently.
EXACT = Context(prec=10**9, Emax=10**9, Emin=-(10**9), traps=[Inexact, InvalidOperation])


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
    try:
        value = Decimal(cell)
    except InvalidOperation:
        if cell.strip():
            raise ValueError(cell) from None
        return None
    # Decimal also reads NaN, Infinity and 1_000, which no CSV writer means as a number.
    if not value.is_finite() or "_" in cell:
        raise ValueError(cell)
    return value


def sum_columns(
    stream: BinaryIO,
    header: bool | None = None,
    delimiter: str = ",",
    cancel: threading.Event | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> Sums:
    """Sum columns 10, 20, 30, ... of a CSV.

    `header`: True or False forces it; None takes the first record as a header when one of
    its summed cells is not a number. Blank lines are skipped. A cell that is not a number
    or a record of another width raises InvalidCSV naming the line as an editor numbers it.
    Setting `cancel` stops the work at the next chunk with TaskInterrupted; `on_rows` is
    told the rows summed so far after each chunk.
    """
    start, line, whole = _first_record(stream)
    if start is None:
        return Sums(rows=0, columns=[])
    end = first_record_end(start)
    record = start[:end] if end != -1 else start
    first = _parse_record(record, delimiter, line)
    layout = Layout(width=len(first), delimiter=delimiter)
    if header is None:
        header = any(_is_not_number(first[i]) for i in layout.indexes)
    names = [first[i] if header else None for i in layout.indexes]
    if header:
        start, line = start[len(record) :], line + record.count(b"\n")

    summer = _ChunkSummer(layout, line)
    rows, totals = 0, [Decimal(0)] * len(layout.indexes)
    if whole:  # the file was read whole already: no threads, no buffers
        with localcontext(EXACT):
            rows, totals = _add(rows, totals, summer(start)) if start else (rows, totals)
        if on_rows is not None:
            on_rows(rows)
        return _sums(layout, names, rows, totals)
    with localcontext(EXACT), ThreadPoolExecutor(1, thread_name_prefix="sum") as pool:
        # Each chunk is summed on the helper thread while this one reads the next: Polars
        # releases the GIL. One thread, so chunks are summed in order and lines add up.
        pending: Future[tuple[int, list[Decimal]]] | None = None
        try:
            for data in chunks(stream, CHUNK_SIZE, start):
                if cancel is not None and cancel.is_set():
                    raise TaskInterrupted("cancelled")
                following = pool.submit(summer, data)
                if pending is not None:
                    rows, totals = _add(rows, totals, pending.result())
                    if on_rows is not None:
                        on_rows(rows)
                pending = following
        except RecordTooLong as error:
            if pending is not None:
                pending.result()  # an error in an earlier chunk comes first
            raise InvalidCSV(f"line {summer.line}: {error}; is a quote left open?") from None
        if pending is not None:
            rows, totals = _add(rows, totals, pending.result())
    if on_rows is not None:
        on_rows(rows)
    return _sums(layout, names, rows, totals)


def _sums(layout: Layout, names: list[str | None], rows: int, totals: list[Decimal]) -> Sums:
    columns = [
        ColumnSum(column=i + 1, name=name, sum=total)
        for i, name, total in zip(layout.indexes, names, totals, strict=True)
    ]
    return Sums(rows=rows, columns=columns)


def _add(
    rows: int, totals: list[Decimal], part: tuple[int, list[Decimal]]
) -> tuple[int, list[Decimal]]:
    part_rows, part_sums = part
    return rows + part_rows, [a + b for a, b in zip(totals, part_sums, strict=True)]


class _ChunkSummer:
    """Sums chunks in file order, keeping count of lines for the exact path's messages."""

    def __init__(self, layout: Layout, first_line: int) -> None:
        self.layout = layout
        self.line = first_line  # the line the next chunk starts on

    def __call__(self, data: bytes) -> tuple[int, list[Decimal]]:
        layout = self.layout
        fast = None
        if len(data) >= SMALL_CHUNK:
            fast = fastsum.sum_chunk(data, layout.width, layout.indexes, layout.delimiter)
        if fast is not None:
            rows, sums, lines = fast
        else:
            rows, sums = exact_chunk(data, self.line, layout)
            lines = data.count(b"\n")
        self.line += lines
        return rows, sums


def exact_chunk(data: bytes, first_line: int, layout: Layout) -> tuple[int, list[Decimal]]:
    """The reference: every record through Python's csv module, every cell through Decimal."""
    # Only summed cells must be numbers; bytes that are not UTF-8 elsewhere (a Latin-1
    # name, say) do not matter, and in a summed cell they fail it as not a number.
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter, strict=True)
    indexes = layout.indexes
    totals = [Decimal(0)] * len(indexes)
    rows = 0
    line = first_line
    with localcontext(EXACT):
        try:
            for row in reader:
                if row:
                    _check_width(row, layout, line)
                    for slot, i in enumerate(indexes):
                        totals[slot] += _cell_value(row[i], line, i)
                    rows += 1
                line = first_line + reader.line_num
        except csv.Error as error:
            raise InvalidCSV(f"line {line}: malformed CSV ({error})") from None
    return rows, totals


def _cell_value(cell: str, line: int, index: int) -> Decimal:
    try:
        value = parse_number(cell)
    except ValueError:
        raise InvalidCSV(f"line {line}, column {index + 1}: {cell!r} is not a number") from None
    if value is None:
        return Decimal(0)
    if abs(value.adjusted()) > 10**8:
        raise InvalidCSV(f"line {line}, column {index + 1}: {cell!r} is out of range")
    return value


def _check_width(row: list[str], layout: Layout, line: int) -> None:
    if len(row) != layout.width:
        raise InvalidCSV(
            f"line {line}: expected {layout.width} fields like the first row, found {len(row)}"
        )


def _first_record(stream: BinaryIO) -> tuple[bytes | None, int, bool]:
    """The start of the file from its first non-blank line, that line's number, and
    whether that is the whole file."""
    data = stream.read(FIRST_READ)  # small: most tasks in a busy queue are small files
    whole = len(data) < FIRST_READ  # a short read: the end of the file
    data = data.removeprefix(BOM)
    line = 1
    while True:
        stripped = data.lstrip(b"\r\n")
        line += data[: len(data) - len(stripped)].count(b"\n")
        data = stripped
        if whole or (data and first_record_end(data) != -1):
            return (data or None), line, whole
        if len(data) > MAX_RECORD:
            raise InvalidCSV(f"line {line}: a record longer than {MAX_RECORD >> 20} MiB")
        more = stream.read(FIRST_READ)
        whole = len(more) < FIRST_READ
        data += more


def _parse_record(record: bytes, delimiter: str, line: int) -> list[str]:
    text = record.decode("utf-8", errors="replace")
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as error:
        raise InvalidCSV(f"line {line}: malformed CSV ({error})") from None


def _is_not_number(cell: str) -> bool:
    try:
        parse_number(cell)
    except ValueError:
        return True
    return False
