"""JSON that keeps sums exact: Decimals go out as JSON numbers and come back as Decimals.

The standard library can only write a Decimal as a float or a string; simplejson writes its
exact digits, so a client parsing with Decimal gets back exactly what the executor summed.
"""

from typing import Any

import simplejson


def dumps(value: Any) -> str:
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    return simplejson.loads(text, use_decimal=True)
