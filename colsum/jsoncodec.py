"""JSON that keeps sums exact: Decimals go out as JSON numbers and come back as Decimals.

The standard library can only write a Decimal as a float or a string. orjson writes a
Decimal's exact digits as a Fragment (text it inserts as it is), ten times faster than
simplejson, which writes them too and reads them back as Decimals; orjson leaves to
simplejson what it refuses: ints beyond 64 bits and strings with lone surrogates.

Python refuses to convert an int of more than 4,300 digits to or from text (a guard
against quadratic conversions); such numbers go through Decimal instead, which has no
such limit and converts them in linear time. Only a value that needs it pays for it.
"""

from decimal import Decimal
from typing import Any

import orjson
import simplejson

# Below Python's int <-> str limit (sys.get_int_max_str_digits(), 4,300 by default).
INT_DIGITS = 4000
BIG = 10**INT_DIGITS


# JSON text written as it is, inside a larger document: a result read back from Redis need
# not be decoded to be served (simplejson writes RawJSON verbatim).
RawJSON = simplejson.RawJSON


def dumps(value: Any) -> str:
    return encode(value).decode()


def encode(value: Any) -> bytes:
    """The value as compact JSON in UTF-8."""
    try:
        return orjson.dumps(value, default=_exact)
    except TypeError:  # orjson.JSONEncodeError: what orjson will not write, simplejson may
        pass
    try:
        return _dumps(value).encode()
    except ValueError as error:
        if "integer string conversion" not in str(error):
            raise
    return _dumps(_big_ints_as_decimals(value)).encode()


def _exact(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    if isinstance(value, RawJSON):
        return orjson.Fragment(value.encoded_json)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


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
