"""JSON read exactly as serde_json reads it, where Python's ``json`` is more lenient.

NaN and infinities, duplicate keys, ``-0`` and integers too long for Python are each closed
next to a comment that names them. Used by :func:`notifier.wire.decode` off its fast path.
"""

import json
import re
from collections import Counter

from .exceptions import MalformedPayload


class RepeatedKeys(dict):
    """A JSON object in which some keys occur more than once (``repeated`` names them)."""

    __slots__ = ("repeated",)


def _object_pairs(pairs):
    # Python keeps the last of duplicate keys; serde rejects a duplicated struct field (and
    # ignores duplicated unknown fields). Nested objects pass through here as well: they are
    # ignored values, where duplicates are fine, so only the top level is checked later.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        obj = RepeatedKeys(obj)
        obj.repeated = {key for key, count in Counter(key for key, _ in pairs).items() if count > 1}
    return obj


def _reject_constant(name):
    # NaN, Infinity and -Infinity are not JSON; serde_json refuses them anywhere.
    raise MalformedPayload(f"{name} is not valid JSON")


class NotU64(int):
    """An integer token a u64 can never hold: negative (``-0`` included) or over 20 digits."""


def _parse_int_exact(token):
    # serde reads "-0" as the float -0.0 and any negative as i64: neither fits u8/u64. Python
    # would give 0 for "-0", and refuses to build ints over 4300 digits, which serde happily
    # skips inside an ignored field. So mark those tokens instead of converting them.
    if token[0] == "-" or len(token) > 20:
        return NotU64(0)
    return int(token)


# The fast scanner is the C one with no hooks (NaN aside), at full speed; the exact decoder,
# with the hooks above, re-reads the rare payloads the fast result cannot vouch for.
_FAST_SCAN = json.JSONDecoder(parse_constant=_reject_constant).scan_once
_EXACT_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_pairs,
    parse_constant=_reject_constant,
    parse_int=_parse_int_exact,
)
# JSON whitespace, the only kind serde (and Python's scanner) skips between tokens.
_WS = re.compile(r"[ \t\n\r]*").match

def has_surrogate(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def json_type(value):
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is float:
        return "a float"
    if type(value) is NotU64:
        return "a negative or oversized integer"
    if type(value) is int:
        return "an integer"
    if type(value) is str:
        return "a string"
    if type(value) is list:
        return "an array"
    return "an object"


def scan_fast(text):
    idx = 0 if text[:1] == "{" else _WS(text).end()
    try:
        obj, end = _FAST_SCAN(text, idx)
    except StopIteration:
        raise MalformedPayload(f"not JSON: expected a value at char {idx}") from None
    except json.JSONDecodeError as exc:
        raise MalformedPayload(f"not JSON: {exc.msg} (char {exc.pos})") from None
    if end != len(text) and _WS(text, end).end() != len(text):
        raise MalformedPayload(f"not JSON: trailing characters at char {end}")
    return obj


def decode_exact(text):
    try:
        return _EXACT_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedPayload(f"not JSON: {exc.msg} (char {exc.pos})") from None
