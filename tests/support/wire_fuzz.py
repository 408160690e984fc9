"""Generated wire v1 payloads for the fuzz suite, each with the outcome it must have.

The model is written from the contract (the reference's ``serde_json::from_slice::<Wire>``,
as ``notifier/wire.py``'s docstring states it), not from the decoder's code, so the decoder
is checked against an independent oracle.

Generation is in two layers, to keep thousands of payloads cheap on a shared machine:

* hypothesis draws a :class:`Shape`: object, array or scalar; for each field how many times
  it appears and what kind of value it gets (``ok``, ``wrong``: valid JSON the field
  refuses, ``broken``: not JSON at all); unknown members; self-echo; version 1 or not; a
  spoiler (trailing garbage, non-JSON whitespace, truncation). Shapes shrink well.
* :func:`render` fills a shape with concrete bytes from a seeded ``random.Random``: strings
  with random escaping (``\\u0041``, ``\\/``, surrogate pairs; keys too, so
  ``"\\u0076ersion"`` is the field ``version``), any of the four UUID spellings in any case,
  integers at the edges of u8/u64, nested ignored values with repeated keys, JSON whitespace.
  The outcome follows from the shape alone.

Corners the decoder documents as deliberate divergences from serde (nesting deeper than
Python's recursion limit, lone surrogates or invalid UTF-8 inside ignored values) are not
generated here; the fuzz tests cover them with explicit cases.
"""

import json
import random
import uuid
from dataclasses import dataclass

from hypothesis import strategies as st

from notifier.dispatch import MALFORMED, SELF_ECHO, UNKNOWN_VERSION
from notifier.events import NotifyEvent
from notifier.wire import U8_MAX, U64_MAX

#: The listener under test drops this instance's messages as self-echo.
SELF_ID = uuid.UUID("6f1c2a7e-3b4d-4c5e-8f90-a1b2c3d4e5f6")

FIELDS = ("tenant_id", "conversation_id", "new_watermark", "version", "instance_id")
DELIVER = "deliver"


@dataclass(frozen=True)
class Payload:
    """A generated payload and what must happen to it."""

    raw: bytes
    outcome: str  # "deliver", or a drop reason
    event: NotifyEvent | None = None


@dataclass(frozen=True)
class Shape:
    """What a payload is made of; see the module docstring."""

    kind: str  # "object" | "array" | "scalar"
    fields: tuple  # per field of FIELDS: a tuple of value kinds, one per occurrence
    unknown: tuple  # per unknown member: "ok" | "broken" | "surrogate_key"
    self_echo: bool
    version_one: bool
    array_change: str | None  # None | "drop" | "extra"
    spoil: str | None  # None | "trailing" | "bad_ws" | "truncate"
    spaced: bool

    @property
    def outcome(self) -> str:
        if self.spoil is not None or self.kind == "scalar":
            return MALFORMED
        if self.kind == "array":
            # One item per field, in order (an absent field gets an ok item); then maybe
            # one item dropped or one extra: five items exactly, or malformed.
            if self.array_change is not None:
                return MALFORMED
            kinds = [occurrences[0] if occurrences else "ok" for occurrences in self.fields]
        else:
            if any(len(occurrences) != 1 for occurrences in self.fields):
                return MALFORMED
            kinds = [occurrences[0] for occurrences in self.fields]
            if "broken" in self.unknown or "surrogate_key" in self.unknown:
                return MALFORMED
        if any(kind != "ok" for kind in kinds):
            return MALFORMED
        if self.self_echo:
            return SELF_ECHO
        return DELIVER if self.version_one else UNKNOWN_VERSION


# The shapes hypothesis draws. Low choices (where it starts and shrinks to) are valid ones.
_value_kind = st.sampled_from(["ok"] * 27 + ["wrong", "wrong", "broken"])
_occurrences = st.sampled_from([1] * 38 + [0, 2]).flatmap(lambda n: st.tuples(*[_value_kind] * n))

shapes = st.builds(
    Shape,
    kind=st.sampled_from(["object"] * 16 + ["array", "array", "scalar"]),
    fields=st.tuples(*[_occurrences] * len(FIELDS)),
    unknown=st.lists(st.sampled_from(["ok"] * 8 + ["broken", "surrogate_key"]), max_size=3).map(
        tuple
    ),
    self_echo=st.sampled_from([False] * 6 + [True]),
    version_one=st.sampled_from([True] * 3 + [False]),
    array_change=st.sampled_from([None] * 4 + ["drop", "extra"]),
    spoil=st.sampled_from([None] * 27 + ["trailing", "bad_ws", "truncate"]),
    spaced=st.booleans(),
)

valid_shapes = shapes.map(
    lambda shape: Shape(
        kind="object" if shape.kind == "scalar" else shape.kind,
        fields=tuple(("ok",) for _ in FIELDS),
        unknown=tuple(kind for kind in shape.unknown if kind == "ok"),
        self_echo=False,
        version_one=True,
        array_change=None,
        spoil=None,
        spaced=shape.spaced,
    )
)


# Concrete values ---------------------------------------------------------------------------

_ALPHABETS = (
    "abcxyz019-_|:.",
    ' "\\/\b\f\n\r\t\x00\x01\x1f\x7f',
    "éüßñ€£¥ÿ",
    "会话租户日本語한국어",
    "\U0001f600\U0001f4a9\U00010000\U0010ffff",
    "\u2028\u2029\ufeff\ufffd\u0301\u200b",
)
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def random_text(rnd, max_size=16):
    alphabet = "".join(rnd.sample(_ALPHABETS, rnd.randint(1, len(_ALPHABETS))))
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, max_size)))


def _u(code, upper):
    digits = f"{code:04x}"
    return "\\u" + (digits.upper() if upper else digits)


def json_string(rnd, text):
    """A JSON string for ``text`` (no lone surrogates) with random escaping, as bytes."""
    escape_rate = rnd.choice([0.0, 0.0, 1.0, 0.3])
    parts = []
    for ch in text:
        code = ord(ch)
        if rnd.random() < escape_rate:
            upper = rnd.random() < 0.5
            if ch == "/" and upper:
                parts.append("\\/")
            elif code > 0xFFFF:
                code -= 0x10000
                parts.append(_u(0xD800 + (code >> 10), upper) + _u(0xDC00 + (code & 0x3FF), upper))
            else:
                parts.append(_u(code, upper))
        elif ch in _SHORT:
            parts.append(_SHORT[ch])
        elif code < 0x20:
            parts.append(_u(code, False))
        else:
            parts.append(ch)
    return ('"' + "".join(parts) + '"').encode("utf-8")


_LONE_SURROGATES = (b"\\ud800", b"\\udfff", b"\\uDC00\\uD800", b"\\ud83d", b"\\ud83dx")
# Not JSON: the payload is malformed wherever one of these sits.
_BROKEN = (
    b'"a\x01b"', b'"unterminated', b'"\\x41"', b'"\\u12"', b'"\\', b"01", b"+1", b"1.",
    b".5", b"0x1", b"NaN", b"Infinity", b"-Infinity", b"1e", b"--1", b"1_000", b"tru", b"nul",
    b"'single'", b"[1,]", b'{"a":1,}', b"{,}", b"[", b"{", b"]", b'"\xff"', b'"\xc0\xaf"',
    b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"\xe2\x82"', b"\xef\xbb\xbf1", b"undefined",
    b'"a"b', b"[1 2]", b'{"a" 1}', b"{1:2}",
)  # fmt: skip
_NUMBERS = (
    b"-0", b"1e3", b"1E-3", b"-0.0", b"0e0", b"1e400", b"-1e400", b"1" * 25, b"9" * 5000, b"0.1",
    b"-12.5e+7",
)  # fmt: skip


def lone_surrogate_string(rnd):
    return b'"' + rnd.choice([b"", b"a", b"xy"]) + rnd.choice(_LONE_SURROGATES) + b'"'


def any_json(rnd, depth=0, scalars_only=False):
    """Any valid JSON value (no lone surrogates), nested a little, keys sometimes repeated."""
    roll = rnd.randrange(8 if depth < 3 and not scalars_only else 6)
    if roll == 0:
        return rnd.choice([b"null", b"true", b"false"])
    if roll == 1:
        return str(rnd.randint(-(2**70), 2**70)).encode()
    if roll == 2:
        return rnd.choice(_NUMBERS)
    if roll == 3:
        return repr(rnd.uniform(-1e6, 1e6)).encode()
    if roll in (4, 5):
        return json_string(rnd, random_text(rnd))
    if roll == 6:
        return b"[" + b",".join(any_json(rnd, depth + 1) for _ in range(rnd.randint(0, 4))) + b"]"
    members = []
    for _ in range(rnd.randint(0, 4)):
        key = b'"k"' if rnd.random() < 0.3 else json_string(rnd, random_text(rnd, 6))
        members.append(key + b":" + any_json(rnd, depth + 1))
    return b"{" + b",".join(members) + b"}"


def _non_string_json(rnd):
    while True:
        value = any_json(rnd)
        if not value.startswith(b'"'):
            return value


def _unsigned(rnd, maximum, favourite=None):
    if favourite is not None:
        return favourite
    return rnd.choice([0, 1, maximum, maximum - 1, rnd.randint(0, maximum), rnd.randint(0, 300)])


def _wrong_unsigned(rnd, maximum):
    n = rnd.randint(0, maximum)
    choices = [
        str(rnd.randint(maximum + 1, maximum * 2**16)), str(maximum + 1),
        str(-rnd.randint(1, 2**70)), "-0", "-0.0", f"{n}.0", f"{n}e0", "1E2", "0.5", "1" * 21,
        "1" * 5000, f'"{n}"', "true", "false", "null", "[]", f"[{n}]", "{}", f'{{"n":{n}}}',
    ]  # fmt: skip
    return rnd.choice(choices).encode()


def _spell_uuid(rnd, value):
    text = rnd.choice([value.hex, str(value), "{" + str(value) + "}", "urn:uuid:" + str(value)])
    prefix = "urn:uuid:" if text.startswith("urn:") else ""
    body = text[len(prefix) :]
    case = rnd.randrange(3)
    if case == 1:
        body = body.upper()
    elif case == 2:
        body = "".join(ch.upper() if rnd.random() < 0.5 else ch for ch in body)
    return prefix + body


def _wrong_uuid(rnd):
    value = uuid.UUID(int=rnd.getrandbits(128))
    hyphenated = str(value)
    wrong = [
        hyphenated[:-1], hyphenated + "0", "g" + hyphenated[1:],
        hyphenated[:8] + hyphenated[9] + "-" + hyphenated[10:],  # a hyphen moved
        "{" + value.hex + "}", "URN:UUID:" + hyphenated, "urn:" + hyphenated,
        "urn:uuid:" + value.hex, " " + hyphenated, hyphenated + " ", "{" + hyphenated,
        hyphenated + "}", "", value.hex[:-1], "0x" + value.hex, hyphenated.replace("-", "_"),
    ]  # fmt: skip
    text = rnd.choice(wrong)
    return json_string(rnd, text) if rnd.random() < 0.8 else _non_string_json(rnd)


def _value(rnd, name, kind, shape):
    """``(bytes, python value)`` for one occurrence of field ``name``."""
    if kind == "broken":
        return rnd.choice(_BROKEN), None
    if name in ("tenant_id", "conversation_id"):
        if kind == "wrong":
            return (
                lone_surrogate_string(rnd) if rnd.random() < 0.4 else _non_string_json(rnd)
            ), None
        text = random_text(rnd)
        return json_string(rnd, text), text
    if name in ("new_watermark", "version"):
        maximum = U64_MAX if name == "new_watermark" else U8_MAX
        if kind == "wrong":
            return _wrong_unsigned(rnd, maximum), None
        if name == "version":
            value = 1 if shape.version_one else rnd.choice([0, 2, 99, U8_MAX, rnd.randint(2, 255)])
        else:
            value = _unsigned(rnd, maximum)
        return str(value).encode(), value
    if kind == "wrong":
        return _wrong_uuid(rnd), None
    value = SELF_ID if shape.self_echo else uuid.UUID(int=rnd.getrandbits(128))
    return json_string(rnd, _spell_uuid(rnd, value)), value


_BAD_WS = (b"\x0b", b"\x0c", b"\xc2\xa0", b"\xe2\x80\xa8", b"\x00", b"\xef\xbb\xbf")
_TRAILING = (b"x", b"}", b",", b"{}", b"[]", b"\x00", b"1", b"\xff", b'"')


def _ws(rnd, shape):
    if not shape.spaced or rnd.random() < 0.5:
        return b""
    return "".join(rnd.choice(" \t\n\r") for _ in range(rnd.randint(1, 3))).encode()


def render(shape: Shape, seed: int) -> Payload:
    """Fill ``shape`` with concrete bytes chosen by ``random.Random(seed)``."""
    rnd = random.Random(seed)
    values = {}
    if shape.kind == "scalar":
        body = any_json(rnd, scalars_only=True)
    elif shape.kind == "array":
        items = []
        for name, occurrences in zip(FIELDS, shape.fields, strict=True):
            raw, values[name] = _value(rnd, name, occurrences[0] if occurrences else "ok", shape)
            items.append(raw)
        if shape.array_change == "drop":
            del items[rnd.randrange(len(items))]
        elif shape.array_change == "extra":
            items.insert(rnd.randint(0, len(items)), any_json(rnd))
        body = b"[" + b",".join(_ws(rnd, shape) + item + _ws(rnd, shape) for item in items) + b"]"
    else:
        members = []
        for name, occurrences in zip(FIELDS, shape.fields, strict=True):
            for kind in occurrences:
                raw, values[name] = _value(rnd, name, kind, shape)
                members.append((json_string(rnd, name), raw))
        for kind in shape.unknown:
            if kind == "surrogate_key":
                members.append((lone_surrogate_string(rnd), any_json(rnd)))
                continue
            key = random_text(rnd, 8)
            while key in FIELDS:
                key += "_"
            members.append(
                (json_string(rnd, key), rnd.choice(_BROKEN) if kind == "broken" else any_json(rnd))
            )
        rnd.shuffle(members)
        body = (
            b"{"
            + b",".join(
                _ws(rnd, shape)
                + key
                + _ws(rnd, shape)
                + b":"
                + _ws(rnd, shape)
                + value
                + _ws(rnd, shape)
                for key, value in members
            )
            + b"}"
        )
    raw = _ws(rnd, shape) + body + _ws(rnd, shape)
    if shape.spoil == "trailing":
        raw += rnd.choice(_TRAILING)
    elif shape.spoil == "bad_ws":
        raw = rnd.choice(_BAD_WS) + raw
    elif shape.spoil == "truncate":
        # Cut before the closing bracket: what is left is never a whole JSON document.
        raw = raw[: rnd.randint(0, len(raw.rstrip(b" \t\r\n")) - 1)]
    outcome = shape.outcome
    event = None
    if outcome == DELIVER:
        event = NotifyEvent(values["tenant_id"], values["conversation_id"], values["new_watermark"])
    return Payload(raw, outcome, event)


#: A hypothesis strategy of single payloads (one shape, one seed).
payloads = st.builds(render, shapes, st.integers(0, 2**32 - 1))


def mutate(raw: bytes, seed: int) -> bytes:
    """``raw`` with one to three byte-level mutations (flip, cut, insert, repeat, swap)."""
    rnd = random.Random(seed)
    data = bytearray(raw)
    for _ in range(rnd.randint(1, 3)):
        op = rnd.choice(["flip", "cut", "insert", "repeat", "swap"])
        at = rnd.randint(0, len(data))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << rnd.randrange(8)
        elif op == "cut":
            del data[at : at + rnd.randint(1, 8)]
        elif op == "insert":
            data[at:at] = rnd.randbytes(rnd.randint(1, 6))
        elif op == "repeat":
            data[at:at] = data[at : at + rnd.randint(1, 12)]
        elif op == "swap" and at + 1 < len(data):
            data[at], data[at + 1] = data[at + 1], data[at]
    return bytes(data)


def lenient_fields(raw: bytes):
    """The five fields as Python's lenient ``json`` reads them (None if it cannot): what the
    strict decoder accepts, the lenient one must read the same way."""
    try:
        # Python refuses to build integers over 4300 digits (only ignored fields hold them).
        value = json.loads(raw, parse_int=lambda token: int(token) if len(token) < 4300 else None)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict):
        return [value.get(name) for name in FIELDS]
    if isinstance(value, list) and len(value) == len(FIELDS):
        return value
    return None
