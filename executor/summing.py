"""The arithmetic: exact sums of every 10th column of a CSV stream, in bounded memory."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any, BinaryIO

from colsum.errors import InvalidCSV

EVERY = 10

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


def exact_number(value: Decimal) -> int | Decimal:
    """Integers as ints (so 1e3 + 2 reads 1002, not 1.002E+3); everything else as is."""
    if value == value.to_integral_value() and value.as_tuple().exponent >= 0:
        return int(value)
    return value


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


def sum_columns(stream: BinaryIO, header: bool | None = None) -> Sums:
    """Sum columns 10, 20, 30, ... of a UTF-8 CSV.

    `header`: True or False forces it; None takes the first row as a header when one of
    its summed cells is not a number. Blank lines are skipped. A cell that is not a number
    or a row of another width raises InvalidCSV naming the line as an editor numbers it.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    line = 0  # the line the current record starts on
    try:
        with localcontext(EXACT):
            first: list[str] = []
            while not first:
                line = reader.line_num + 1
                first = next(reader, None)
                if first is None:
                    return Sums(rows=0, columns=[])
            width = len(first)
            indexes = range(EVERY - 1, width, EVERY)
            if header is None:
                header = any(_is_not_number(first[i]) for i in indexes)
            names = [first[i] if header else None for i in indexes]
            totals = [Decimal(0)] * len(indexes)
            rows = 0

            def add(row: list[str]) -> None:
                if len(row) != width:
                    raise InvalidCSV(
                        f"line {line}: expected {width} fields like the first row, found {len(row)}"
                    )
                for slot, i in enumerate(indexes):
                    try:
                        value = parse_number(row[i])
                    except ValueError:
                        raise InvalidCSV(
                            f"line {line}, column {i + 1}: {row[i]!r} is not a number"
                        ) from None
                    if value is not None:
                        try:
                            totals[slot] += value
                        except ArithmeticError:
                            raise InvalidCSV(
                                f"line {line}, column {i + 1}: {row[i]!r} is out of range"
                            ) from None

            if not header:
                add(first)
                rows = 1
            line = reader.line_num + 1
            for row in reader:
                if row:
                    add(row)
                    rows += 1
                line = reader.line_num + 1
    except csv.Error as error:
        raise InvalidCSV(f"line {line}: malformed CSV ({error})") from None
    except UnicodeDecodeError as error:
        raise InvalidCSV(f"line {line}: the file is not UTF-8 text ({error.reason})") from None
    columns = [
        ColumnSum(column=i + 1, name=name, sum=total)
        for i, name, total in zip(indexes, names, totals, strict=True)
    ]
    return Sums(rows=rows, columns=columns)


def _is_not_number(cell: str) -> bool:
    try:
        parse_number(cell)
    except ValueError:
        return True
    return False
