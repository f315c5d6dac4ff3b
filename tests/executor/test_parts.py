"""Summing a file in parts (executor/parts.py): cut anywhere, merged, the parts give what
one stream gives, or say that they cannot (a part started inside quotes)."""

from __future__ import annotations

import io
from functools import partial
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colsum.errors import InvalidCSV
from executor import parts, summing
from tests.executor.test_fastsum import csv_files, numbers

HEADER = ",".join(f"c{i}" for i in range(1, 11)) + "\n"


def row(value: str, first: str = "1") -> str:
    return ",".join([first] + ["1"] * 8 + [value]) + "\n"


def in_parts(data: bytes, split_size: int) -> tuple[dict | str, int]:
    """The result (or error) of summing `data` in parts of `split_size` in this process,
    as executors do, and how many parts there were; SumAgain passes through."""
    stream = parts.Counting(io.BytesIO(data))
    try:
        opening = summing.open_csv(stream)
    except InvalidCSV as error:  # in the first record: the task is not split
        return str(error), 0
    if opening is None:
        return summing.Sums(0, []).to_result(), 0
    start = stream.count - len(opening.rest)
    ranges = parts.plan(start, len(data), split_size)
    reports = []
    for index, (begin, end) in enumerate(ranges):
        first = index == 0
        stream = io.BytesIO(data[begin if first else begin - 1 :])
        reader = parts.PartReader(stream, begin, end, first, ",")
        reports.append(parts.sum_range(reader, partial(summing.sum_part, layout=opening.layout)))
    try:
        return parts.merge(opening, reports).to_result(), len(ranges)
    except InvalidCSV as error:
        return str(error), len(ranges)


def in_one_stream(data: bytes) -> dict | str:
    try:
        return summing.sum_columns(io.BytesIO(data)).to_result()
    except InvalidCSV as error:
        return str(error)


line_texts = st.text(st.sampled_from('ab ,;"\t.-1'), max_size=6)


@st.composite
def rfc_files(draw) -> tuple[bytes, int]:
    """CSVs quoted as RFC 4180 says (quotes doubled, fields with delimiters, quotes or
    newlines quoted), which parts can sum apart unless a quoted newline spans a boundary."""
    width = draw(st.integers(10, 25))
    lines = [",".join(f"c{i}" for i in range(width))]
    for _ in range(draw(st.integers(0, 30))):
        cells = []
        for column in range(width):
            cell = draw(numbers if column % 10 == 9 else st.one_of(numbers, line_texts))
            if not draw(st.integers(0, 60)):
                cell += "\n"  # a quoted newline now and then
            if any(c in cell for c in ',"\r\n') or draw(st.integers(0, 5)) == 0:
                cell = '"' + cell.replace('"', '""') + '"'
            cells.append(cell)
        lines.append(",".join(cells))
    return "\n".join(lines).encode() + draw(st.sampled_from([b"\n", b""])), width


@st.composite
def split_files(draw, files=csv_files) -> tuple[bytes, int]:
    """A generated CSV and a split size below its size."""
    data, _ = draw(files())
    return data, draw(st.integers(1, max(1, len(data) // 2)))


@settings(max_examples=300, deadline=None)
@given(st.one_of(split_files(), split_files(rfc_files)), st.integers(1, 64))
def test_parts_sum_what_one_stream_sums_or_ask_for_one_stream(case, chunk):
    data, split_size = case
    with patch.object(summing, "CHUNK_SIZE", chunk):
        try:
            split, _ = in_parts(data, split_size)
        except parts.SumAgain:
            return
        assert split == in_one_stream(data)


def test_rfc_4180_files_are_mostly_merged_from_parts():
    """Else the property above would hold trivially. (Files with stray quotes, `a"b`, go
    to one stream: the quote parity cannot tell where their parts start.)"""
    merged = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(split_files(rfc_files))
    def count(case):
        try:
            merged.append(in_parts(*case)[1] > 1)
        except parts.SumAgain:
            merged.append(False)

    count()
    assert sum(merged) > len(merged) / 4


def test_a_stray_quote_has_the_task_summed_again_as_one_stream():
    """`0"` is a character to the csv module, so the next line's quoted field holds a
    newline; by the parity alone, a part starting after that newline would be outside."""
    data = (HEADER + row("1") * 3 + 'x",2,3,4,5,6,7,8,"\n",5\n' + row("2") * 3).encode()
    with pytest.raises(parts.SumAgain, match="a quote inside an unquoted field"):
        in_parts(data, 10)
    assert in_one_stream(data)["rows"] == 7


def test_the_header_is_read_once_and_lines_straddling_boundaries_belong_to_one_part():
    data = (HEADER + "".join(row(str(n)) for n in range(1, 101))).encode()
    for split_size in (1, 7, 22, 23, 24, 100, 1000):
        result, count = in_parts(data, split_size)
        assert result == {"rows": 100, "columns": [{"column": 10, "name": "c10", "sum": 5050}]}
        assert count > 1


def test_a_quoted_newline_across_a_boundary_asks_for_one_stream():
    data = (HEADER + row('"1\n2"', first='"x\n' * 50 + 'y"') * 3).encode()
    with pytest.raises(parts.SumAgain):
        in_parts(data, 40)


def test_a_bad_cell_in_a_later_part_names_the_files_line():
    lines = [row(str(n)) for n in range(1, 200)]
    lines[150] = row("abc")
    data = (HEADER + "\n" + "".join(lines)).encode()  # a blank line counts too
    result, count = in_parts(data, 512)
    assert count > 4
    assert result == in_one_stream(data) == "line 153, column 10: 'abc' is not a number"


def test_the_first_error_in_the_file_wins_whichever_part_finds_it():
    lines = [row(str(n)) for n in range(1, 200)]
    lines[20], lines[180] = row("x1"), row("x2")
    data = (HEADER + "".join(lines)).encode()
    assert in_parts(data, 300)[0] == "line 22, column 10: 'x1' is not a number"


def test_a_line_longer_than_a_part_leaves_the_parts_it_covers_empty():
    data = (HEADER + row("1", first="a" * 5000) + row("2") + row("3", first="b" * 3000)).encode()
    result, count = in_parts(data, 100)
    assert count > 50
    assert result == in_one_stream(data)
    assert result["rows"] == 3


def test_the_plan_covers_the_data_once_in_ranges_of_about_the_split_size():
    assert parts.plan(10, 110, 0) == [(10, 110)]
    assert parts.plan(10, 110, 100) == [(10, 110)]
    assert parts.plan(10, 110, 30) == [(10, 35), (35, 60), (60, 85), (85, 110)]
    assert parts.plan(0, 7, 3) == [(0, 3), (3, 6), (6, 7)]
