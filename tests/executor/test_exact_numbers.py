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


@pytest.mark.parametrize(
    "value",
    [
        Decimal("0.1") + Decimal("0.2"),
        Decimal("-0.000000000000000001"),
        2**63,  # one past int64: orjson refuses it, simplejson writes it
        -(2**64) - 1,
        Decimal("123456789012345678901234567890.123456789"),
    ],
)
def test_numbers_beyond_a_double_or_int64_are_written_exactly(value):
    assert jsoncodec.loads(jsoncodec.dumps({"sum": value})) == {"sum": value}


def test_stored_json_text_is_written_as_it_is():
    raw = jsoncodec.RawJSON('{"sum":0.30000000000000000001}')
    assert jsoncodec.dumps({"result": raw}) == '{"result":{"sum":0.30000000000000000001}}'


def test_text_is_written_as_utf8_and_lone_surrogates_escaped():
    # A header cell of invalid UTF-8 reaches a column's name as a lone surrogate
    # (surrogateescape): not UTF-8, so it is written as a JSON escape.
    assert jsoncodec.encode({"name": "é✓"}) == '{"name":"é✓"}'.encode()
    assert jsoncodec.dumps({"name": "1\udcff"}) == '{"name":"1\\udcff"}'
