"""Hostile or careless input fails its task with a message a user can act on, in bounded
time and memory, and can be stopped at any point."""

from __future__ import annotations

import io
import threading
from decimal import Decimal

import pytest

from colsum.errors import InvalidCSV, PermanentError, TaskInterrupted
from executor import fastsum, summing
from executor.summing import sum_columns


@pytest.fixture(autouse=True, params=["fast path first", "exact path only"])
def path(request, monkeypatch):
    if request.param == "exact path only":
        monkeypatch.setattr(fastsum, "sum_chunk", lambda *args: None)


def row(c10: str = "0", width: int = 20, delimiter: str = ",") -> str:
    values = ["0"] * width
    values[9] = c10
    return delimiter.join(values)


def sums(data: str | bytes, **options) -> dict:
    raw = data.encode() if isinstance(data, str) else data
    return sum_columns(io.BytesIO(raw), **options).to_result()


# -- bounds on a cell and a result --------------------------------------------------------


@pytest.mark.parametrize("cell", ["1e100000000", "1e-100000000", "1e1001", "1e-1001", "1" * 1001])
def test_a_cell_beyond_the_bounds_fails_naming_line_and_column(cell: str):
    shown = repr(cell) if len(cell) <= 80 else repr(cell[:80]) + r"\.\.\. \(1001 characters\)"
    message = (
        rf"^line 3, column 10: {shown} is out of range: "
        r"at most 1000 digits and exponents up to 1000$"
    )
    with pytest.raises(InvalidCSV, match=message):
        sums(f"{row()}\n{row()}\n{row(cell)}\n")


def test_the_exact_sum_of_a_huge_and_a_tiny_cell_is_refused_not_computed():
    with pytest.raises(InvalidCSV, match=r"^line 1, column 10: '1e100000000' is out of range"):
        sums(f"{row('1e100000000')}\n{row('1e-100000000')}\n")


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("1e1000", Decimal("1e1000")),
        ("1e-1000", Decimal("1e-1000")),
        ("9" * 1000, Decimal("9" * 1000)),
        ("0" * 2000 + "1", 1),  # leading zeros are not significant digits
    ],
)
def test_cells_within_the_bounds_are_summed_exactly(cell: str, value):
    assert sums(f"{row(cell)}\n")["columns"][0]["sum"] == value


def test_too_many_columns_to_sum_fails_at_the_first_row():
    width = summing.MAX_COLUMNS * 10 + 10
    with pytest.raises(
        InvalidCSV, match=rf"^line 1: {width} fields, 20001 columns to sum; at most 20000 "
    ):
        sums(",".join(["1"] * width) + "\n")


def test_a_result_too_large_to_store_fails_with_its_size():
    names = ["h"] * 20
    names[9] = names[19] = "n" * (2200 << 10)
    with pytest.raises(
        InvalidCSV, match=r"^the result would be \d+ bytes of JSON, at most 4194304"
    ):
        sums(",".join(names) + "\n" + row() + "\n")


@pytest.mark.parametrize("cell", ["\u0661\u0662", "\uff11\uff12", "\u00a07"])
def test_digits_and_spaces_of_other_scripts_are_not_numbers(cell: str):
    with pytest.raises(InvalidCSV, match=r"^line 2, column 10: .* is not a number$"):
        sums(f"{row()}\n{row(cell)}\n")


# -- messages for user mistakes -----------------------------------------------------------


def test_a_cell_in_a_message_is_cut_to_80_characters():
    with pytest.raises(InvalidCSV) as error:
        sums(f"{row()}\n{row('x' * 131072)}\n")
    assert str(error.value) == (
        f"line 2, column 10: {'x' * 80!r}... (131072 characters) is not a number"
    )


@pytest.mark.parametrize("offset", [0, 25, 65535])
def test_a_nul_byte_in_the_first_64_kib_is_not_a_csv_file(offset: int):
    data = bytearray(f"{row()}\n".encode() * 4000)
    data[offset] = 0
    with pytest.raises(InvalidCSV, match=rf"^not a CSV file: binary bytes at offset {offset}$"):
        sums(bytes(data))


def test_a_nul_byte_further_on_is_a_byte_like_any_other():
    data = f"{row('1')}\n".encode() * 4000 + f"a\0b,{row('1')[2:]}\n".encode()
    assert sums(data)["columns"][0]["sum"] == 4001


def test_utf16_text_is_refused_with_what_to_do():
    with pytest.raises(InvalidCSV, match=r"UTF-16 text; save it as UTF-8$"):
        sums(f"{row()}\n".encode("utf-16"))


@pytest.mark.parametrize(("delimiter", "shown"), [(";", "';'"), ("\t", r"'\\t'"), ("|", "'|'")])
def test_a_file_sent_with_the_wrong_delimiter_gets_the_right_one_suggested(delimiter, shown):
    header = delimiter.join(f"h{i}" for i in range(1, 6))
    with pytest.raises(
        InvalidCSV,
        match=rf"^line 2: expected 1 field like the first row, found 5 — "
        rf"is the delimiter {shown}\?$",
    ):
        sums(f"{header}\n1,2,3,4,5\n")


@pytest.mark.parametrize(("delimiter", "shown"), [(";", "';'"), ("\t", r"'\\t'")])
def test_a_file_whose_rows_all_split_by_another_delimiter_fails_suggesting_it(delimiter, shown):
    """Every row one field: no width to disagree, but summing by ',' would find nothing."""
    lines = [delimiter.join(f"h{i}" for i in range(1, 13))]
    lines += [delimiter.join(str(i) for i in range(1, 13))] * 3
    with pytest.raises(
        InvalidCSV,
        match=rf"^line 1: one field, which {shown} splits into 12: is the delimiter {shown}\?",
    ):
        sums("\n".join(lines) + "\n")


def test_a_one_column_file_with_a_few_semicolons_is_summed_as_it_is():
    assert sums("note\na;b\nc;d\n")["columns"] == []


def test_a_one_field_first_row_without_a_known_delimiter_gets_no_suggestion():
    with pytest.raises(InvalidCSV, match=r"^line 2: expected 1 field like the first row, found 2$"):
        sums("total\n1,2\n")


@pytest.mark.parametrize("delimiter", ["€", ";;", "", '"', "\n", "\r"])
def test_a_delimiter_that_is_not_one_ascii_character_is_refused(delimiter: str):
    with pytest.raises(PermanentError, match=r"is not allowed: use one ASCII character"):
        sums(f"{row()}\n" * 5000, delimiter=delimiter)


# -- line ends and other bytes ------------------------------------------------------------


def test_cr_only_line_ends_fail_instead_of_losing_the_rows_after_a_header():
    header = ",".join(f"h{i}" for i in range(1, 21))
    with pytest.raises(InvalidCSV, match=r"^line 1: a carriage return \(CR\) that is not followed"):
        sums(f"{header}\r{row('1')}\r{row('2')}\r")


def test_a_lone_cr_inside_a_row_fails_on_both_paths():
    """Part of a field or a line end? Neither path guesses."""
    text = f"{row()}\n" * 3000 + "1\r2," + row()[2:] + "\n"
    with pytest.raises(InvalidCSV, match=r"^line 3001: a carriage return \(CR\)"):
        sums(text)


def test_a_cr_inside_quotes_is_part_of_the_field():
    assert sums(f'"a\rb",{row("5")[2:]}\r\n')["columns"][0]["sum"] == 5


def test_a_long_text_field_is_read_on_both_paths():
    """The csv module's own limit (128 KiB a field) failed it on the exact path only."""
    long = "t" * (200 << 10)
    text = f"{long},{row('2')[2:]}\n" + f"{row('1')}\n" * 10
    assert sums(text)["columns"][0]["sum"] == 12


def test_many_blank_lines_are_skipped_and_counted():
    with pytest.raises(InvalidCSV, match=r"^line 100002, column 10"):
        sums(f"{row()}\n" + "\n" * 100_000 + f"{row('x')}\n")


# -- cost and cancelling ------------------------------------------------------------------


class Cancelling(io.BytesIO):
    """A stream that sets `cancel` after its `after`-th read."""

    def __init__(self, data: bytes, cancel: threading.Event, after: int) -> None:
        super().__init__(data)
        self.cancel, self.after, self.reads = cancel, after, 0

    def read(self, size: int = -1) -> bytes:
        self._count()
        return super().read(size)

    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._count()
        return super().readinto(buffer)

    def _count(self) -> None:
        self.reads += 1
        if self.reads == self.after:
            self.cancel.set()


def test_cancel_stops_the_first_record_scan_of_a_quote_left_open():
    cancel = threading.Event()
    stream = Cancelling(b'"' + b"\n" * (8 << 20), cancel, after=3)
    with pytest.raises(TaskInterrupted):
        sum_columns(stream, cancel=cancel)
    assert stream.reads == 3


def test_cancel_stops_the_reading_of_chunks(monkeypatch):
    monkeypatch.setattr(summing, "CHUNK_SIZE", 1 << 16)
    cancel = threading.Event()
    stream = Cancelling(f"{row()}\n".encode() * 100_000, cancel, after=5)
    with pytest.raises(TaskInterrupted):
        sum_columns(stream, cancel=cancel)
    assert stream.reads == 5


def test_the_exact_path_looks_at_cancel_every_few_thousand_records():
    looks = []
    layout = summing.Layout(width=20, delimiter=",")
    data = f"{row('1')}\n\n".encode() * 5000  # blank lines count too
    summing.exact_chunk(data, 1, layout, check=lambda: looks.append(1))
    assert len(looks) == 10_000 // summing.CHECK_EVERY


def test_a_cancel_inside_the_exact_path_raises_task_interrupted():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TaskInterrupted):
        sum_columns(io.BytesIO(f"{row('1e0')}\n".encode() * 10_000), cancel=cancel)
