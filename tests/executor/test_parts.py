"""Summing a file in parts (executor/parts.py): cut anywhere, merged, the parts give what
one stream gives, or say that they cannot (a part started inside quotes)."""

from __future__ import annotations

import io
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colsum.errors import InvalidCSV
from executor import parts, summing
from tests.executor.test_fastsum import csv_files

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
        reader = parts.PartReader(
            io.BytesIO(data[begin if first else begin - 1 :]), begin, end, first
        )
        reports.append(parts.sum_range(reader, opening.layout))
    try:
        return parts.merge(opening, reports).to_result(), len(ranges)
    except InvalidCSV as error:
        return str(error), len(ranges)


def in_one_stream(data: bytes) -> dict | str:
    try:
        return summing.sum_columns(io.BytesIO(data)).to_result()
    except InvalidCSV as error:
        return str(error)


@st.composite
def split_files(draw) -> tuple[bytes, int]:
    """A generated CSV (tests/executor/test_fastsum.py) and a split size below its size."""
    data, _ = draw(csv_files())
    return data, draw(st.integers(1, max(1, len(data) // 2)))


@settings(max_examples=300, deadline=None)
@given(split_files(), st.integers(1, 64))
def test_parts_sum_what_one_stream_sums_or_ask_for_one_stream(case, chunk):
    data, split_size = case
    with patch.object(summing, "CHUNK_SIZE", chunk):
        try:
            split, _ = in_parts(data, split_size)
        except parts.SumAgain:
            return
        assert split == in_one_stream(data)


def test_the_generated_files_are_often_merged_from_parts():
    """Else the property above would hold trivially. Stray quotes in the generated files
    (`a"b`: a character to the csv module, an open quote to the parity) send many to one
    stream, as they should: the parts cannot prove where records start."""
    merged = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(split_files())
    def count(case):
        try:
            merged.append(in_parts(*case)[1] > 1)
        except parts.SumAgain:
            merged.append(False)

    count()
    assert sum(merged) > len(merged) / 8


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
