"""JSON text for PostgreSQL's JSONB that keeps every float a float.

JSONB stores a number as NUMERIC and writes it back without an exponent, so a float that Python
writes with one (`1.152921504606847e+18`, any of 1e16 or more) came back as the integer
1152921504606847000: another type, and another value than the float 2**60 that was written. Written
here as its exact integer value with a fractional part (`1152921504606846976.0`), it comes back as
the same float. Floats below 1e-4 also carry an exponent, but their NUMERIC keeps its decimals and
reads back as the same float."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def dumps(value: Any) -> str:
    """`value` as JSON text whose floats JSONB reads back as the same floats."""
    text = json.dumps(value)
    if "e+" not in text:  # no float of 1e16 or more (the common case: one C-speed pass)
        return text
    return _encode(value)


def _encode(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and abs(value) >= 1e16:
        return f"{int(value)}.0"  # every float this large is an integer, so int() is exact
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)}: {_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def _key(key: Any) -> str:
    # json's own spelling of a key (True as "true", 1.0 as "1.0"), quoted.
    return json.dumps({key: 0})[1:-4]
