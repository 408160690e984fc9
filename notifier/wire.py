"""Wire v1: the bytes replicas publish on the global channel, exactly as the reference reads them.

:func:`decode` accepts precisely what the reference's ``serde_json::from_slice::<Wire>``
accepts and :func:`encode` writes the bytes ``serde_json::to_vec`` writes; each of Python's
leniencies is closed next to a comment that names it. The vectors in
``shared/wire-v1-vectors.json`` pin the behaviour; docs/backplane.md has the details.
"""

import logging
import re
import uuid
from dataclasses import dataclass
from json.encoder import encode_basestring

from .events import NotifyEvent, new_event
from .exceptions import MalformedPayload
from .memo import BoundedCache
from .serde import RepeatedKeys, decode_exact, has_surrogate, json_type, scan_fast

logger = logging.getLogger(__name__)

#: The Redis pub/sub channel the reference publishes on.
DEFAULT_CHANNEL = "greentic:webchat:notify"

#: The only version a listener delivers; others decode but are dropped as ``unknown_version``.
VERSION = 1

U64_MAX = 2**64 - 1
U8_MAX = 2**8 - 1

_FIELDS = ("tenant_id", "conversation_id", "new_watermark", "version", "instance_id")
_FIELD_SET = frozenset(_FIELDS)

# The uuid crate's parser (uuid 1.x ``Uuid::parse_str``) takes exactly four shapes: 32 hex
# digits, 8-4-4-4-12 hyphenated, that wrapped in braces, or after a lowercase ``urn:uuid:``.
# Hex digits in any case. Python's uuid.UUID() also takes hyphens anywhere, "urn:" without
# "uuid:", and surrounding braces on the simple form, so it cannot be the judge.
_HYPHENATED = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID_RE = re.compile(
    rf"[0-9a-fA-F]{{32}}|{_HYPHENATED}|\{{{_HYPHENATED}\}}|urn:uuid:{_HYPHENATED}"
)


@dataclass(frozen=True, slots=True)
class WireMessage:
    """One decoded wire v1 message (any version number in 0..255, any instance)."""

    tenant_id: str
    conversation_id: str
    new_watermark: int
    version: int
    instance_id: uuid.UUID

    @property
    def event(self) -> NotifyEvent:
        """The notification this message carries, as local subscribers receive it."""
        return new_event(self.tenant_id, self.conversation_id, self.new_watermark)


# The frozen dataclass's __init__ sets each field through object.__setattr__, much of
# decode's time; writing the slots through their descriptors builds the same object in half.
_SET_TENANT, _SET_CONVERSATION, _SET_WATERMARK, _SET_VERSION, _SET_INSTANCE = (
    WireMessage.__dict__[name].__set__ for name in _FIELDS
)


def _new_message(tenant_id, conversation_id, new_watermark, version, instance_id):
    message = object.__new__(WireMessage)
    _SET_TENANT(message, tenant_id)
    _SET_CONVERSATION(message, conversation_id)
    _SET_WATERMARK(message, new_watermark)
    _SET_VERSION(message, version)
    _SET_INSTANCE(message, instance_id)
    return message


# The exact layout our publishers (and the reference) write, in which every leniency above is
# out of the question: strings with no quote, backslash or control character (so no escape and
# no lone surrogate: the text came from valid UTF-8), integers without sign, fraction, exponent
# or leading zero, each of the five fields once in declaration order, a lowercase hyphenated
# UUID, optionally our "ts" (notifier.lag) as an integer, and nothing else. A payload in that
# shape is read with one regex (docs/benchmarks.md); anything else, and a match whose
# numbers are out of range, takes the general path below, which alone raises errors.
_CANONICAL = re.compile(
    r'\{"tenant_id":"([^"\\\x00-\x1f]*)","conversation_id":"([^"\\\x00-\x1f]*)",'
    r'"new_watermark":(0|[1-9][0-9]{0,19}),"version":(0|[1-9][0-9]{0,2}),'
    r'"instance_id":"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"'
    r'(?:,"ts":(?:0|[1-9][0-9]{0,15}))?\}'
).fullmatch


def _parse_uuid(value):
    if type(value) is not str:
        raise MalformedPayload(f"instance_id: expected a UUID string, got {json_type(value)}")
    return _UUIDS[value]


def _uuid_from_text(value):
    if _UUID_RE.fullmatch(value) is None:
        raise MalformedPayload(f"instance_id: {value[:60]!r} is not a UUID")
    # Safe now that the regex vouched for the spelling.
    return uuid.UUID(value)


# Few replicas publish, so the same few spellings come back again and again: remember them.
_UUIDS = BoundedCache(_uuid_from_text, 1024)


def _build(tenant_id, conversation_id, new_watermark, version, instance_id, escaped):
    if type(tenant_id) is not str:
        raise MalformedPayload(f"tenant_id: expected a string, got {json_type(tenant_id)}")
    if type(conversation_id) is not str:
        raise MalformedPayload(
            f"conversation_id: expected a string, got {json_type(conversation_id)}"
        )
    # ``type(x) is int`` keeps out bools (an int subclass), floats such as 1.0 or 1e3 (which
    # serde refuses for integer fields) and the NotU64 marks of notifier.serde.
    if type(new_watermark) is not int:
        raise MalformedPayload(f"new_watermark: expected a u64, got {json_type(new_watermark)}")
    if not 0 <= new_watermark <= U64_MAX:
        raise MalformedPayload(f"new_watermark: {new_watermark} is outside u64 (0..{U64_MAX})")
    if type(version) is not int:
        raise MalformedPayload(f"version: expected a u8, got {json_type(version)}")
    if not 0 <= version <= U8_MAX:
        raise MalformedPayload(f"version: {version} is outside u8 (0..{U8_MAX})")
    # An escaped lone surrogate ("\ud800") decodes to a str that UTF-8 cannot hold; serde
    # refuses it in a String. Only a payload with a \u escape can produce one.
    if escaped:
        if has_surrogate(tenant_id):
            raise MalformedPayload("tenant_id: a lone surrogate is not a valid string")
        if has_surrogate(conversation_id):
            raise MalformedPayload("conversation_id: a lone surrogate is not a valid string")
    return _new_message(
        tenant_id, conversation_id, new_watermark, version, _parse_uuid(instance_id)
    )


def _from_object(obj, escaped):
    if type(obj) is RepeatedKeys:
        duplicated = sorted(obj.repeated & _FIELD_SET)
        if duplicated:
            raise MalformedPayload(f"duplicate field {duplicated[0]!r}")
    if escaped:
        # serde parses every top-level key as a String, unknown ones included.
        for key in obj:
            if has_surrogate(key):
                raise MalformedPayload("lone surrogate in a key")
    try:
        return _build(
            obj["tenant_id"],
            obj["conversation_id"],
            obj["new_watermark"],
            obj["version"],
            obj["instance_id"],
            escaped,
        )
    except KeyError as exc:
        raise MalformedPayload(f"missing field {exc.args[0]!r}") from None


def _from_array(items, escaped):
    # serde's derived struct visitor also accepts the fields as a sequence, in order.
    if len(items) != len(_FIELDS):
        raise MalformedPayload(
            f"an array payload must hold exactly {len(_FIELDS)} fields, got {len(items)}"
        )
    return _build(*items, escaped)


def decode(payload: bytes) -> WireMessage:
    """Parse wire v1 bytes; raise :class:`MalformedPayload` for what the reference rejects.

    Called by the listener for every message on the global channel. The version number and
    the instance id are returned, not judged: see :func:`notifier.dispatch.classify`.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayload(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    canonical = _CANONICAL(text)
    if canonical is not None:
        tenant_id, conversation_id, watermark, version, instance_id = canonical.groups()
        watermark, version = int(watermark), int(version)
        if watermark <= U64_MAX and version <= U8_MAX:
            return _new_message(
                tenant_id, conversation_id, watermark, version, _UUIDS[instance_id]
            )
    return _decode_text(text)


def _decode_text(text):
    """decode() for any text: the JSON scanners and every check (the canonical layout's
    shortcut gives the same message; tests compare the two)."""
    try:
        try:
            obj = scan_fast(text)
        except ValueError as exc:
            if isinstance(exc, MalformedPayload):
                raise
            # An integer over Python's 4300-digit limit, which serde skips in ignored fields.
            obj = decode_exact(text)
        else:
            if type(obj) is dict:
                # Each pair has one ":" outside strings, so as many colons as keys proves no
                # key was repeated (Python keeps the last of duplicates, serde rejects a
                # duplicated field). Otherwise let the exact decoder see every pair.
                again = text.count(":") != len(obj) or (
                    (obj.get("new_watermark") == 0 or obj.get("version") == 0) and "-" in text
                )
            else:
                again = type(obj) is list and 0 in obj and "-" in text
            if again:
                # Also the way out for "-0", which Python reads as 0 and serde as -0.0 (a
                # float, which no unsigned field takes).
                obj = decode_exact(text)
    except RecursionError:
        # serde skips ignored values with no depth limit; Python's scanner has one.
        raise MalformedPayload("JSON nested too deeply") from None
    escaped = "\\u" in text
    if type(obj) is dict or type(obj) is RepeatedKeys:
        return _from_object(obj, escaped)
    if type(obj) is list:
        return _from_array(obj, escaped)
    raise MalformedPayload(f"expected a JSON object, got {json_type(obj)}")


def encode(event: NotifyEvent, instance_id: uuid.UUID) -> bytes:
    """Return the wire v1 bytes the reference writes for ``event`` published by ``instance_id``.

    Compact JSON, fields in declaration order, non-ASCII as raw UTF-8, control characters as
    lowercase ``\\u00xx`` (serde_json's escaping is the same as ``json``'s with
    ``ensure_ascii=False``). Raises ``TypeError`` for a field of the wrong type and
    ``ValueError`` for a watermark outside u64 or an id that UTF-8 cannot hold.
    """
    tenant_id, conversation_id = event.tenant_id, event.conversation_id
    watermark = event.new_watermark
    if not isinstance(tenant_id, str) or not isinstance(conversation_id, str):
        raise TypeError("tenant_id and conversation_id must be str")
    if not isinstance(watermark, int) or isinstance(watermark, bool):
        raise TypeError(f"new_watermark must be an int, not {type(watermark).__name__}")
    if not 0 <= watermark <= U64_MAX:
        raise ValueError(f"new_watermark {watermark} is outside u64 (0..{U64_MAX})")
    if not isinstance(instance_id, uuid.UUID):
        raise TypeError(f"instance_id must be a uuid.UUID, not {type(instance_id).__name__}")
    tail = _TAILS[instance_id.int]
    text = (
        f'{{"tenant_id":{encode_basestring(tenant_id)},'
        f'"conversation_id":{encode_basestring(conversation_id)},'
        f'"new_watermark":{int(watermark)}{tail}'
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("tenant_id or conversation_id holds a lone surrogate") from None


def _tail(instance_int):
    return f',"version":{VERSION},"instance_id":"{uuid.UUID(int=instance_int)}"}}'


# A publisher encodes with its one instance id: format the UUID once.
_TAILS = BoundedCache(_tail, 64)
