"""The summing rules, on in-memory streams."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from colsum import jsoncodec
from colsum.errors import InvalidCSV
from executor import chunks, fastsum, summing
from executor.summing import sum_columns
from tests.csvfiles import write_numbers

HEADER = ",".join(f"h{i}" for i in range(1, 21))


@pytest.fixture(autouse=True, params=["fast path first", "exact path only"])
def path(request, monkeypatch):
    """Each rule holds whichever path sums: the compiled kernel first (falling back to the
    exact path where it steps aside), and the exact path alone."""
    if request.param == "exact path only":
        monkeypatch.setattr(fastsum, "sum_chunk", lambda *args: None)


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


def test_without_summed_columns_a_text_row_above_numbers_is_the_header():
    nine = ",".join(f"c{i}" for i in range(1, 10))
    rows = "".join(",".join(str(n + i) for i in range(9)) + "\n" for n in range(12))
    assert sums(f"{nine}\n{rows}") == {"rows": 12, "columns": []}


def test_text_above_text_beside_the_summed_cells_is_data_not_a_header():
    result = sums(f"{row(c2='alice', c10='5')}\n{row(c2='bob', c10='6')}\n")
    assert result["rows"] == 2
    assert result["columns"][0]["sum"] == 11


def test_without_summed_columns_a_row_of_numbers_with_some_text_is_data():
    assert sums("1,N/A,3\n4,5,6\n")["rows"] == 2


def test_a_one_line_file_of_text_is_a_header_and_one_with_a_number_is_a_row():
    assert sums("a,b,c\n")["rows"] == 0
    assert sums("alice,2,3\n")["rows"] == 1


def test_an_empty_file_has_no_rows():
    assert sums("") == {"rows": 0, "columns": []}


def test_a_header_only_file_has_zero_sums():
    result = sums(f"{HEADER}\n")
    assert result["rows"] == 0
    assert [c["sum"] for c in result["columns"]] == [0, 0]


def test_an_unclosed_quote_fails_naming_its_line():
    with pytest.raises(InvalidCSV, match=r"^line 3: malformed CSV"):
        sums(f'{HEADER}\n{row()}\n"open,{row()[2:]}\n')


def test_bytes_that_are_not_utf8_fail_only_in_a_summed_cell():
    latin1 = row(c2="caf\xe9").encode("latin-1")
    assert sum_columns(io.BytesIO(latin1 + b"\n" + latin1 + b"\n")).to_result()["rows"] == 2
    bad = row(c10="1\xff").encode("latin-1")
    with pytest.raises(InvalidCSV, match=r"^line 2, column 10: '1\\udcff' is not a number$"):
        sum_columns(io.BytesIO(f"{row()}\n".encode() + bad + b"\n"))


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        (" 7 ", 7),
        ("+5", 5),
        ("1.5e3", 1500),
        ("-0", 0),
        ("-0.0", 0),
        ("18446744073709551617", 18446744073709551617),  # 2**64 + 1
        ("0.1234567890123", Decimal("0.1234567890123")),  # more decimals than the fast path
        ('"12.5"', Decimal("12.5")),  # quoted
    ],
)
def test_numbers_as_csv_writers_write_them(cell: str, value):
    assert sums(f"{HEADER}\n{row(c10=cell)}\n")["columns"][0]["sum"] == value


def test_quoted_fields_may_hold_delimiters_quotes_and_newlines():
    text = f'{HEADER}\n"a,b","say ""hi""","two\nlines",{row(c10="5")[6:]}\n{row(c10="1")}\n'
    assert sums(text)["columns"][0] == {"column": 10, "name": "h10", "sum": 6}


def test_a_semicolon_delimited_file_with_decimal_points():
    text = f"{HEADER}\n{row(c10='1.5')}\n".replace(",", ";")
    result = sum_columns(io.BytesIO(text.encode()), delimiter=";").to_result()
    assert result["columns"][0] == {"column": 10, "name": "h10", "sum": Decimal("1.5")}


def test_sums_beyond_38_digits_stay_exact():
    big = "9" * 29 + ".5"
    text = "".join(f"{row(c10=big)}\n" for _ in range(100))
    assert sums(text)["columns"][0]["sum"] == Decimal("9" * 29 + "50")


def test_the_sums_do_not_depend_on_where_the_stream_is_cut(monkeypatch, tmp_path):
    expected = write_numbers(tmp_path / "n.csv", rows=3000, columns=25, seed=9)
    for size in (1, 7, 100, 4096, 1 << 20):
        monkeypatch.setattr(summing, "CHUNK_SIZE", size)
        with (tmp_path / "n.csv").open("rb") as stream:
            result = sum_columns(stream)
        assert [c.sum for c in result.columns] == expected
        assert result.rows == 3000


def test_a_long_row_and_a_short_row_that_balance_are_still_found():
    text = f"{row()}\n{row()},1\n{row()[2:]}\n"
    message = r"^line 2: expected 20 fields like the first row, found 21$"
    with pytest.raises(InvalidCSV, match=message):
        sums(text)


def test_a_quote_left_open_fails_instead_of_reading_the_rest_as_one_record(monkeypatch):
    monkeypatch.setattr(summing, "CHUNK_SIZE", 64)
    monkeypatch.setattr(summing, "FIRST_READ", 64)
    monkeypatch.setattr(chunks, "MAX_RECORD", 256)
    text = f'{HEADER}\n{row()}\n"{row()}\n' + f"{row()}\n" * 50
    with pytest.raises(InvalidCSV, match=r"^line 3: a record longer than"):
        sums(text)
