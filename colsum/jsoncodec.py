"""JSON that keeps sums exact: Decimals go out as JSON numbers and come back as Decimals.

The standard library can only write a Decimal as a float or a string; simplejson writes its
exact digits, so a client parsing with Decimal gets back exactly what the executor summed.

Python refuses to convert an int of more than 4,300 digits to or from text (a guard
against quadratic conversions); such numbers go through Decimal instead, which has no
such limit and converts them in linear time. Only a value that needs it pays for it.
"""

from decimal import Decimal
from typing import Any

import simplejson

# Below Python's int <-> str limit (sys.get_int_max_str_digits(), 4,300 by default).
INT_DIGITS = 4000
BIG = 10**INT_DIGITS


# JSON text written as it is, inside a larger document: a result read back from Redis need
# not be decoded to be served (simplejson writes RawJSON verbatim).
RawJSON = simplejson.RawJSON


def dumps(value: Any) -> str:
    try:
        return _dumps(value)
    except ValueError as error:
        if "integer string conversion" not in str(error):
            raise
    return _dumps(_big_ints_as_decimals(value))


def loads(text: str | bytes) -> Any:
    try:
        return simplejson.loads(text, use_decimal=True)
    except ValueError as error:
        if "integer string conversion" not in str(error):
            raise
    return simplejson.loads(text, use_decimal=True, parse_int=_parse_int)


def _dumps(value: Any) -> str:
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"))


def _big_ints_as_decimals(value: Any) -> Any:
    """The value with every huge int as a Decimal, which simplejson writes as plain digits
    (an int's Decimal has exponent 0: no point, no exponent)."""
    if isinstance(value, dict):
        return {key: _big_ints_as_decimals(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_as_decimals(item) for item in value]
    if isinstance(value, int) and abs(value) >= BIG:
        return Decimal(value)
    return value


def _parse_int(text: str) -> int:
    return int(text) if len(text) <= INT_DIGITS else int(Decimal(text))
