"""The fast path: Polars parses a chunk on all cores and adds its cells as Decimal(38, 9).

It answers only when it can prove its answer exact, and otherwise returns None so that the
chunk goes to the exact path, which also names the line of any error. It steps aside for:
quotes in the chunk, a CR that is not part of a CRLF, blank lines, a row of another width,
a cell Polars cannot read as a decimal (text, spaces, too many digits), a cell with an
exponent or more than 9 decimals (the cast would round them), and a sum that overflows 38
digits (Polars raises).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import polars as pl

SCALE = 9
DECIMAL = pl.Decimal(38, SCALE)
# Cells the cast would not take exactly: an exponent, or digits beyond SCALE decimals.
INEXACT = rf"[eE]|\.[0-9]{{{SCALE + 1}}}"


def sum_chunk(
    data: bytes, width: int, indexes: range, delimiter: str
) -> tuple[int, list[Decimal], int] | None:
    """(rows, exact column sums, lines) of a chunk of whole records; None: use the exact path."""
    if b'"' in data or width < 2:
        return None  # quoted fields may hold delimiters and newlines: counts prove nothing
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None  # a lone CR: part of a field here, an error on the exact path
    wanted = sorted({*indexes, width - 1})
    try:
        frame = pl.read_csv(
            data,
            has_header=False,
            separator=delimiter,
            columns=wanted,
            infer_schema=False,  # every column a string: the cast below checks each cell
            quote_char=None,
        )
    except pl.exceptions.PolarsError:
        return None
    if not _every_row_has_width(data, frame[frame.columns[-1]], width, delimiter):
        return None
    rows = frame.height  # and, with no quotes and no blank lines, as many lines
    if not indexes:
        return rows, [], rows
    # `wanted` is `indexes` (sorted) and maybe the last column after them, so the summed
    # columns come first. Read `frame.columns` once: each read builds the whole list.
    names = frame.columns[: len(indexes)]
    try:
        *sums, inexact = frame.select(
            *[pl.col(name).cast(DECIMAL).sum() for name in names],
            pl.any_horizontal(pl.col(name).str.contains(INEXACT).any() for name in names).alias(
                "inexact"
            ),
        ).row(0)
    except pl.exceptions.PolarsError:
        return None
    if inexact:
        return None
    return rows, sums, rows


def _every_row_has_width(data: bytes, last: pl.Series, width: int, delimiter: str) -> bool:
    """Polars, asked for some columns, drops the extra fields of a long row and fills the
    missing ones of a short row (or a blank line) with nulls; count delimiters instead.

    A row whose last field is there has at least width - 1 delimiters; the others are
    counted one by one; then the total says whether any row has more."""
    chars = np.frombuffer(data, np.uint8)
    if np.count_nonzero(chars == ord(delimiter)) != len(last) * (width - 1):
        return False
    missing = last.is_null()
    if not missing.any():
        return True
    ends = np.flatnonzero(chars == ord("\n"))
    separator = delimiter.encode()
    for row in missing.arg_true().to_list():
        start = int(ends[row - 1]) + 1 if row else 0
        stop = int(ends[row]) if row < len(ends) else len(data)
        if data.count(separator, start, stop) != width - 1:
            return False
    return True
