"""Sums go into Redis and out to clients as JSON with every digit, whatever their size."""

from __future__ import annotations

from decimal import Decimal

import pytest

from colsum import jsoncodec
from executor.summing import exact_number

HUGE = int(Decimal("1e5000"))  # beyond Python's 4,300-digit int <-> str limit


def test_an_integer_of_any_size_is_written_as_plain_digits():
    assert jsoncodec.dumps({"sum": HUGE}) == '{"sum":1' + "0" * 5000 + "}"
    assert jsoncodec.dumps([-HUGE]) == "[-1" + "0" * 5000 + "]"


def test_an_integer_of_any_size_is_read_back_exactly():
    assert jsoncodec.loads(jsoncodec.dumps({"sum": HUGE, "rows": 3})) == {"sum": HUGE, "rows": 3}


def test_a_huge_integral_sum_is_stored_as_an_integer():
    assert jsoncodec.dumps(exact_number(Decimal("1" + "0" * 4299 + "1"))) == "1" + "0" * 4299 + "1"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("4617083.41"), "4617083.41"),
        (Decimal("1123509.60"), "1123509.6"),
        (Decimal("-10269.00"), "-10269"),
        (Decimal("1E+3"), "1000"),
        (Decimal("0.000"), "0"),
    ],
)
def test_ordinary_sums_keep_their_format(value: Decimal, text: str):
    assert jsoncodec.dumps(exact_number(value)) == text
    assert jsoncodec.loads(text) == value
