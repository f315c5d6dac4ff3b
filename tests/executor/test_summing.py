"""The summing rules, on in-memory streams."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from colsum import jsoncodec
from colsum.errors import InvalidCSV
from executor.summing import sum_columns

HEADER = ",".join(f"h{i}" for i in range(1, 21))


def row(**cells: str) -> str:
    """A 20-field row, zeros except the 1-based columns given as c10='1.5', c20='2'."""
    values = ["0"] * 20
    for name, value in cells.items():
        values[int(name[1:]) - 1] = value
    return ",".join(values)


def sums(text: str, header: bool | None = None) -> dict:
    return sum_columns(io.BytesIO(text.encode()), header).to_result()


def test_sums_columns_10_and_20_exactly():
    result = sums(f"{HEADER}\n{row(c10='0.1', c20='7')}\n{row(c10='0.2', c20='-3')}\n")
    assert result == {
        "rows": 2,
        "columns": [
            {"column": 10, "name": "h10", "sum": Decimal("0.3")},
            {"column": 20, "name": "h20", "sum": 4},
        ],
    }


def test_sums_keep_every_digit_beyond_float_and_decimal_default_precision():
    big = "123456789012345678901234567890.123456789"
    result = sums(f"{row(c10=big)}\n{row(c10=big)}\n")
    assert result["columns"][0]["sum"] == Decimal("246913578024691357802469135780.246913578")
    assert (
        jsoncodec.dumps(result["columns"][0]["sum"]) == "246913578024691357802469135780.246913578"
    )


def test_integer_sums_stay_integers_in_json():
    result = sums(f"{row(c10='1e3', c20='5')}\n{row(c10='2', c20='-5')}\n")
    assert jsoncodec.dumps(result["columns"]) == (
        '[{"column":10,"name":null,"sum":1002},{"column":20,"name":null,"sum":0}]'
    )


def test_first_row_is_data_when_its_summed_cells_are_numbers():
    result = sums(f"{row(c10='5')}\n{row(c10='6')}\n")
    assert result["rows"] == 2
    assert result["columns"][0] == {"column": 10, "name": None, "sum": 11}


def test_first_row_is_a_header_when_one_summed_cell_is_not_a_number():
    result = sums(f"{row(c20='total')}\n{row(c10='6')}\n")
    assert result["rows"] == 1
    assert [c["name"] for c in result["columns"]] == ["0", "total"]


def test_header_true_takes_a_numeric_first_row_as_names():
    result = sums(f"{row(c10='5')}\n{row(c10='6')}\n", header=True)
    assert result["rows"] == 1
    assert result["columns"][0] == {"column": 10, "name": "5", "sum": 6}


def test_header_false_makes_a_text_first_row_fail_as_data():
    with pytest.raises(InvalidCSV, match=r"line 1, column 10: 'h10' is not a number"):
        sums(f"{HEADER}\n{row(c10='6')}\n", header=False)


def test_empty_cells_are_skipped():
    result = sums(f"{HEADER}\n{row(c10='')}\n{row(c10='  ')}\n{row(c10='2.5')}\n")
    assert result["rows"] == 3
    assert result["columns"][0]["sum"] == Decimal("2.5")


@pytest.mark.parametrize("cell", ["abc", "1,5", "NaN", "inf", "-Infinity", "1_000", "0x10"])
def test_a_cell_that_is_not_a_number_fails_naming_line_and_column(cell: str):
    text = f"{HEADER}\n{row(c10='1')}\n{row(c20=cell)}\n".replace(cell, f'"{cell}"')
    with pytest.raises(InvalidCSV, match=rf"^line 3, column 20: '{cell}' is not a number$"):
        sums(text)


def test_a_row_of_another_width_fails_naming_its_line():
    with pytest.raises(
        InvalidCSV, match=r"^line 3: expected 20 fields like the first row, found 3$"
    ):
        sums(f"{HEADER}\n{row()}\n1,2,3\n")


def test_line_numbers_count_blank_lines_and_newlines_inside_quotes():
    text = f'{HEADER}\n\n"multi\nline",{row()[2:]}\n{row(c10="x")}\n'
    with pytest.raises(InvalidCSV, match=r"^line 5, column 10"):
        sums(text)


def test_blank_lines_are_skipped():
    assert sums(f"{HEADER}\n\n{row(c10='1')}\n\n\n{row(c10='2')}\n")["rows"] == 2


def test_crlf_bom_and_missing_final_newline():
    text = "\ufeff" + f"{HEADER}\r\n{row(c10='1')}\r\n{row(c10='2')}"
    result = sums(text)
    assert result["rows"] == 2
    assert result["columns"][0] == {"column": 10, "name": "h10", "sum": 3}


def test_fewer_than_ten_columns_gives_an_empty_list():
    assert sums("a,b,c\n1,2,3\n4,5,6\n", header=True) == {"rows": 2, "columns": []}


def test_without_summed_columns_nothing_marks_a_header_so_every_row_counts():
    assert sums("a,b,c\n1,2,3\n") == {"rows": 2, "columns": []}


def test_an_empty_file_has_no_rows():
    assert sums("") == {"rows": 0, "columns": []}


def test_a_header_only_file_has_zero_sums():
    result = sums(f"{HEADER}\n")
    assert result["rows"] == 0
    assert [c["sum"] for c in result["columns"]] == [0, 0]


def test_an_unclosed_quote_fails_naming_its_line():
    with pytest.raises(InvalidCSV, match=r"^line 3: malformed CSV"):
        sums(f'{HEADER}\n{row()}\n"open,{row()[2:]}\n')


def test_text_that_is_not_utf8_fails_clearly():
    data = f"{HEADER}\n".encode() + row(c10="1").encode().replace(b"1", b"\xff", 1) + b"\n"
    with pytest.raises(InvalidCSV, match="not UTF-8"):
        sum_columns(io.BytesIO(data))
