"""The fast path (executor.fastsum): what it sums, where it steps aside, and that it agrees
with the exact path to the last digit."""

from __future__ import annotations

import io
import os
from decimal import Decimal
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor import fastsum, summing
from tests.csvfiles import write_numbers


def test_the_fast_path_and_the_exact_path_agree_to_the_last_digit(tmp_path):
    write_numbers(tmp_path / "n.csv", rows=5000, columns=40, seed=4)
    data = (tmp_path / "n.csv").read_bytes().split(b"\n", 1)[1]
    layout = summing.Layout(width=40, delimiter=",")
    fast = fast_sums(data, 40)
    assert fast is not None
    assert fast == summing.exact_chunk(data, 2, layout)


def fast_sums(data: bytes, width: int = 10, delimiter: str = ","):
    """The fast path's (rows, sums) of a chunk, or None where it steps aside."""
    chunk = fastsum.sum_chunk(fastsum.padded(data), width, delimiter)
    if chunk is None:
        return None
    totals = fastsum.Totals(len(range(9, width, 10)))
    totals.add(chunk)
    return chunk.rows, totals.decimals()


@pytest.mark.parametrize(
    "data",
    [
        b"1,2,3,4,5,6,7,8,9,1.5e3\n",  # an exponent
        b"1,2,3,4,5,6,7,8,9,0.1234567890123456789\n",  # 19 digits: more than an int64
        b"1,2,3,4,5,6,7,8,9,0.0000000000000000001\n",  # 19 decimals
        b"1,2,3,4,5,6,7,8,9,1234567890123456789\n",
        b"1,2,3,4,5,6,7,8,9,\n1,2,3,4,5,6,7,8,9\n",  # a short row
        b"1,2,3,4,5,6,7,8,9, 7\n",  # a space
        b"1,2,3,4,5,6,7,8,9,7 \n",
        b"1,2,3,4,5,6,7,8,9,1,2\n",  # a long row
        b"1,2,3,4,5,6,7,8,9,-\n",  # a sign alone
        b"1,2,3,4,5,6,7,8,9,.\n",  # a point alone
        b"1,2,3,4,5,6,7,8,9,1.2.3\n",
        b"1,2,3,4,5,6,7,8,9,0x10\n",
        b"1,2,3,4,5,6,7,8,9,1\r2\n",  # a lone CR
        b"1,2,3,4,5,6,7,8,9,1\r",
        b'1,2,3,4,5,6,7,8,9,"1"2\n',  # text after a closing quote
        b'1,2,3,4,5,6,7,8,9,"1\n',  # a quote open at the end of the chunk
        b'1,2,3,4,5,6,7,8,9,"1""2"\n',  # a doubled quote in a number
        b"1,2,3,4,5,6,7,8,9,\xd9\xa3\n",  # an Arabic-Indic digit
    ],
)
def test_the_fast_path_steps_aside_when_it_cannot_prove_its_sum(data: bytes):
    assert fast_sums(data) is None


@pytest.mark.parametrize(
    ("data", "rows", "total"),
    [
        (b'"1","2","3","4","5","6","7","8","9","1.5"\n', 1, "1.5"),  # QUOTE_ALL
        (b'a,"b,c\nd",3,4,5,6,7,8,9,"-2"\r\n1,2,3,4,5,6,7,8,9,+3\r\n', 2, "1"),
        (b'"say ""hi""",2,3,4,5,6,7,8,9,""\n', 1, "0"),  # doubled quotes, empty quoted
        (b'a"b,2,3,4,5,6,7,8,9,1\n', 1, "1"),  # a quote inside a field is a character
        (b"1,2,3,4,5,6,7,8,9,5.\n\n\r\n1,2,3,4,5,6,7,8,9,.5\n", 2, "5.5"),  # blank lines
        (b"1,2,3,4,5,6,7,8,9,-0\n1,2,3,4,5,6,7,8,9,007", 2, "7"),  # no final newline
        (b"1,2,3,4,5,6,7,8,9,999999999999999999\n" * 100, 100, "99999999999999999900"),
        (b"1,2,3,4,5,6,7,8,9,0.000000000000000001\n", 1, "1e-18"),
    ],
)
def test_the_fast_path_sums_what_it_can_prove(data: bytes, rows: int, total: str):
    assert fast_sums(data) == (rows, [Decimal(total)])
    assert summing.exact_chunk(data, 1, summing.Layout(width=10, delimiter=",")) == (
        rows,
        [Decimal(total)],
    )


def test_a_wide_chunk_is_summed_by_the_fast_path():
    """Its work is one pass over the bytes whatever the width: 100k columns once cost
    seconds a chunk (a per-column cost in the Polars path)."""
    width = 100_000
    data = (",".join(["1"] * width) + "\n").encode() * 3
    chunk = fastsum.sum_chunk(fastsum.padded(data), width, ",")
    assert chunk is not None
    assert chunk.rows == 3
    assert (chunk.acc[:, 0] == 3).all()


# The property: on any CSV, the fast path sums exactly what the exact path sums, or steps
# aside; never a different sum, never a sum where the exact path finds an error.
numbers = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.builds(
        lambda n, places: f"{Decimal(n).scaleb(-places):f}",
        st.integers(-(10**20), 10**20),
        st.integers(0, 20),
    ),
    st.sampled_from(["", "-0", "+0", "-0.0", ".5", "5.", "007", "1e3", "-2E-2", "1_0", "٣"]),
)
texts = st.text(st.sampled_from('ab ,;"\r\n\t.-1'), max_size=6)


@st.composite
def csv_files(draw) -> tuple[bytes, int]:
    width = draw(st.integers(1, 25))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    quote_all = draw(st.booleans())
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 15)) == 0:
            lines.append("")  # a blank line
            continue
        cells = []
        for column in range(width + draw(st.sampled_from([0] * 15 + [-1, 1]))):
            cell = draw(numbers if column % 10 == 9 else st.one_of(numbers, texts))
            quoted = quote_all or any(c in cell for c in ',"\r\n') or draw(st.booleans())
            if quoted and draw(st.integers(0, 30)):  # sometimes a stray quote instead
                cell = '"' + cell.replace('"', '""') + '"'
            if not draw(st.integers(0, 40)):  # a quote where a writer would not put one
                cell = draw(st.sampled_from(['"{}"x', '"{}', '{}"', '""{}""', '"{}""'])).format(
                    cell
                )
            cells.append(cell)
        lines.append(",".join(cells))
    text = newline.join(lines) + draw(st.sampled_from([newline, ""]))
    return text.encode(), width


def exact_or_error(data: bytes, width: int):
    try:
        return summing.exact_chunk(data, 1, summing.Layout(width=width, delimiter=","))
    except summing.InvalidCSV as error:
        return str(error)


@settings(max_examples=400, deadline=None)
@given(csv_files())
def test_the_fast_path_agrees_with_the_exact_path_or_steps_aside(case):
    data, width = case
    fast = fast_sums(data, width)
    exact = exact_or_error(data, width)
    if fast is not None:
        assert fast == exact


@settings(max_examples=150, deadline=None)
@given(csv_files(), st.integers(1, 300), st.integers(1, 100))
def test_a_file_sums_the_same_or_fails_at_the_same_line_on_either_path(case, size, first):
    data, _ = case

    def result():
        try:
            return summing.sum_columns(io.BytesIO(data)).to_result()
        except summing.InvalidCSV as error:
            return str(error)

    with patch.object(summing, "CHUNK_SIZE", size), patch.object(summing, "FIRST_READ", first):
        both = result()
        with patch.object(fastsum, "sum_chunk", lambda *args: None):
            assert result() == both


def test_the_generated_files_are_mostly_summed_by_the_fast_path():
    """Else the properties above would hold trivially."""
    summed = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(csv_files())
    def count(case):
        data, width = case
        if not isinstance(exact_or_error(data, width), str):
            summed.append(fast_sums(data, width) is not None)

    count()
    assert sum(summed) > len(summed) / 3


def test_a_quoted_empty_field_is_a_row_not_a_blank_line():
    chunk = fastsum.sum_chunk(fastsum.padded(b'""\n\n""\n'), 1, ",")
    assert chunk is not None
    assert (chunk.rows, chunk.lines) == (2, 3)


def test_numba_caches_in_the_temporary_folder_when_its_own_are_read_only(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "read-only"))
    monkeypatch.setattr(fastsum, "_writable", lambda folder: False)
    fastsum._choose_cache()
    assert os.environ["NUMBA_CACHE_DIR"].endswith("colsum-numba")


def test_a_writable_cache_folder_is_left_as_configured(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    fastsum._choose_cache()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "cache")
