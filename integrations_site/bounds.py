"""Data from outside, bounded before it is stored.

Upstream APIs and webhook senders choose what they send; one tenant's
upstream must not be able to break a write that is shared with other
tenants (a batch of checks, a usage flush). Everything read from an answer
or a delivery goes through here before it reaches a column:

- numbers are clamped to the range their column holds (``clamp_int``,
  ``clamp_decimal``);
- text loses NUL, which PostgreSQL text and JSON cannot hold, and is cut to
  its column's length (``clean_text``);
- JSON is parsed only after its nesting depth was measured (``loads``: a
  depth limit, not a RecursionError caught after the fact), without the
  NaN/Infinity constants that JSON columns refuse, and parsed values are
  cleaned the same way (``clean_json``).
"""
import json
import math
import re
from decimal import Decimal, InvalidOperation
from itertools import accumulate

# Nesting that a status list, a sample or a webhook body needs is a handful of levels.
MAX_JSON_DEPTH = 64
BIGINT_MAX = 2**63 - 1

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonRefused(ValueError):
    """The text is not JSON we store: malformed, too deep, or holding NaN/Infinity."""


def clamp_int(value, low: int = 0, high: int = BIGINT_MAX) -> int:
    """``value`` as an int within [low, high]; anything that is not written as a whole number is ``low``."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return low
    return max(low, min(high, number))


def clamp_decimal(value, low: Decimal, high: Decimal, places: int) -> Decimal:
    """``value`` as a finite Decimal within [low, high], rounded to ``places``; else ``low``."""
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return low
    if not number.is_finite():
        return low
    return max(low, min(high, number)).quantize(Decimal(1).scaleb(-places))


def clean_text(value, max_chars: int | None = None) -> str:
    """``value`` as text without NUL, at most ``max_chars`` characters."""
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text[:max_chars] if max_chars is not None else text


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _refuse_constant(name: str):
    raise JsonRefused(f"{name} is not a JSON number we store")


def loads(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH):
    """Parse JSON from outside: refused (JsonRefused) when malformed, deeper than ``max_depth`` or holding
    NaN/Infinity; strings and keys come back without NUL."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if json_depth(raw) > max_depth:
        raise JsonRefused(f"JSON nested deeper than {max_depth} levels")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant)
    except JsonRefused:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JsonRefused(f"not JSON: {type(exc).__name__}") from None
    return clean_json(value) if "\\u0000" in text or "\x00" in text else value


def clean_json(value, *, max_depth: int = MAX_JSON_DEPTH):
    """A copy of parsed JSON without NUL in strings or keys; what lies deeper than ``max_depth`` becomes None."""
    if max_depth < 0:
        return None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): clean_json(v, max_depth=max_depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v, max_depth=max_depth - 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean_headers(headers: dict, *, max_value_chars: int = 8192) -> dict:
    """Header names and values as text without NUL, values cut to ``max_value_chars``."""
    return {clean_text(k, 256): clean_text(v, max_value_chars) for k, v in headers.items()}
