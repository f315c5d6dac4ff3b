"""sum_even: count the integers of a text file and sum the even ones, exactly."""

from __future__ import annotations

import io
import threading
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colsum.errors import InvalidNumbers, TaskInterrupted
from executor import evens


def result(data: bytes, chunk: int | None = None) -> dict:
    if chunk is None:
        return evens.sum_even(io.BytesIO(data)).to_result()
    with patch.object(evens, "CHUNK_SIZE", chunk):
        return evens.sum_even(io.BytesIO(data)).to_result()


def test_counts_the_integers_and_sums_the_even_ones():
    assert result(b"1 2 3\n4 5 6\n") == {"count": 6, "even_count": 3, "sum": 12}


def test_whitespace_newlines_and_commas_separate_and_runs_count_as_one():
    data = b"  1,2\t\t3\r\n\n4 ,, 6\x0b8\x0c10"
    assert result(data) == {"count": 7, "even_count": 5, "sum": 30}


def test_signs_negative_evens_and_zeros():
    assert result(b"-4 +6 -0 0 007 -3") == {"count": 6, "even_count": 4, "sum": 2}


def test_integers_of_up_to_4000_digits_sum_exactly():
    big = 10**40 + 2
    huge = 10**3999 + 4
    data = f"{big} {huge} 999999999999999998 1\n".encode()
    assert result(data)["sum"] == big + huge + 999999999999999998


def test_an_integer_of_more_than_4000_digits_fails_in_bounded_time():
    """Converting digits costs their square: a million took 24 s."""
    with pytest.raises(
        InvalidNumbers, match=r"^line 2: an integer of 1,000,000 digits; at most 4,000$"
    ):
        result(b"2\n" + b"7" * 1_000_000 + b"\n")


def test_sums_past_int64_carry_exactly():
    data = b"999999999999999998\n" * 50_000
    assert result(data, chunk=1 << 16) == {
        "count": 50_000,
        "even_count": 50_000,
        "sum": 999999999999999998 * 50_000,
    }


def test_an_empty_file_has_no_integers():
    assert result(b"") == {"count": 0, "even_count": 0, "sum": 0}
    assert result(b" \n\n , ") == {"count": 0, "even_count": 0, "sum": 0}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"1 2\n3 x4\n", r"^line 2: 'x4' is not an integer$"),
        (b"1\n\n1.5\n", r"^line 3: '1.5' is not an integer$"),
        (b"1e3", r"^line 1: '1e3' is not an integer$"),
        (b"+ 2", r"^line 1: '\+' is not an integer$"),
        (b"1_000", r"^line 1: '1_000' is not an integer$"),
        ("\u0663".encode(), r"^line 1: '\u0663' is not an integer$"),
        (b"a,b,c\n1,2,3\n", r"^line 1: 'a' is not an integer$"),
    ],
)
def test_a_token_that_is_not_an_integer_fails_naming_its_line(data: bytes, message: str):
    with pytest.raises(InvalidNumbers, match=message):
        result(data)


def test_a_bad_token_far_into_a_file_is_named_by_its_line():
    data = b"2 4\n" * 100_000 + b"oops\n"
    with pytest.raises(InvalidNumbers, match=r"^line 100001: 'oops'"):
        result(data, chunk=1 << 16)


def test_one_long_line_is_cut_between_tokens():
    data = b" ".join(b"%d" % n for n in range(200_000))
    expected = sum(n for n in range(200_000) if n % 2 == 0)
    assert result(data, chunk=4096) == {"count": 200_000, "even_count": 100_000, "sum": expected}


def test_a_cancel_stops_the_reading():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TaskInterrupted):
        evens.sum_even(io.BytesIO(b"2 4 6\n" * 100_000), cancel=cancel)


tokens = st.one_of(
    st.integers(-(10**25), 10**25).map(str),
    st.sampled_from(["-0", "+8", "007", "x", "1.5", "-", "1e2", "9" * 19, "8" * 30]),
)
separators = st.sampled_from([" ", "\n", ",", "\t", "\r\n", "  ", ",\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(tokens, separators), max_size=40), st.integers(4, 200))
def test_the_compiled_pass_agrees_with_the_exact_path(pairs, chunk):
    data = "".join(token + separator for token, separator in pairs).encode()

    def outcome():
        try:
            return result(data, chunk)
        except InvalidNumbers as error:
            return str(error)

    fast = outcome()
    with patch.object(evens, "_scan", lambda *args: evens.INEXACT):
        assert outcome() == fast


def test_plain_files_take_the_compiled_pass():
    with patch.object(evens, "exact_chunk", side_effect=AssertionError("exact path")):
        assert result(b"1 2 3\n" * 10_000, chunk=1 << 12)["count"] == 30_000
