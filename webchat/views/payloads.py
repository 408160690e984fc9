"""Reading what clients send: JSON bodies, watermarks, users and activities.

Everything here raises DirectLineError for bad input, before anything is written. JSON is
checked for what a database would refuse later (NaN, Infinity, numbers such as ``1e999``
that overflow to infinity, NUL characters, lone surrogates: not valid in PostgreSQL
``jsonb``), so bad input is a 400, never a 500 at insert time. So is
nesting deeper than ``MAX_JSON_DEPTH``: Python parses about 1,000 levels from a shallow
stack, but storing, serving and streaming re-encode the value from deeper stacks, where a
document a little under that limit raised RecursionError (a 500).
"""

import json
import math
import re
import unicodedata

from django.core.exceptions import RequestDataTooBig

from webchat.conf import settings

from .errors import DirectLineError, bad_argument, missing_property, too_large

#: Watermarks are sequence numbers stored in a 64-bit column.
MAX_WATERMARK = 2**63 - 1
_WATERMARK = re.compile(r"[0-9]{1,19}")
_DIGITS = re.compile(r"[0-9]+")
MAX_USER_FIELD = 256
#: Arrays and objects nested deeper than this are refused (Adaptive Cards need a few dozen).
MAX_JSON_DEPTH = 100


def _short(value: str, limit: int = 40) -> str:
    """A bounded repr of client input, for error messages."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _content_length(request) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def check_json_content_type(request) -> None:
    """415 unless the body is declared as UTF-8 JSON (``application/json`` or ``*+json``)."""
    content_type = request.content_type or ""
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise DirectLineError(
            415,
            "UnsupportedMediaType",
            f"Content-Type {_short(content_type or '(none)')} is not supported; "
            "send application/json.",
        )
    charset = (request.content_params or {}).get("charset", "utf-8").lower()
    if charset not in {"utf-8", "utf8"}:
        raise DirectLineError(
            415, "UnsupportedMediaType", f"charset {_short(charset)} is not supported; use utf-8."
        )


def _too_deep() -> DirectLineError:
    return DirectLineError(
        400, "BadSyntax", f"JSON must not nest arrays and objects deeper than {MAX_JSON_DEPTH}."
    )


def _check_storable(value) -> None:
    """400 if ``value`` holds text a database cannot store (NUL, lone surrogates) or nests
    deeper than MAX_JSON_DEPTH."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise bad_argument("JSON strings must not contain NUL (\\u0000) characters.")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise bad_argument("JSON strings must not contain lone surrogates.") from exc


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text):
    # 1e999 parses as infinity: neither SQLite's JSON nor PostgreSQL's jsonb stores it (a 500
    # at insert), and re-encoded it would be "Infinity", which no JSON client parses.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {_short(text)} is too large (JSON numbers must be finite)")
    return value


def parse_json(raw: bytes):
    """Decode a UTF-8 JSON document, or raise 400 BadSyntax naming the problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DirectLineError(400, "BadSyntax", "The body is not valid UTF-8.") from exc
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise _too_deep() from exc
    except ValueError as exc:
        raise DirectLineError(400, "BadSyntax", f"The body is not valid JSON: {exc}") from exc
    _check_storable(value)
    return value


def read_json_body(request, max_bytes: int, *, required: bool):
    """Return the request's JSON body, or None when it is empty and not ``required``.

    Called by views that take JSON. Raises 413 above ``max_bytes``, 415 for a body that
    is not declared as JSON, 400 for bad JSON or a missing required body.
    """
    declared = request.META.get("CONTENT_LENGTH")
    if declared and not _DIGITS.fullmatch(declared):
        # Django's request.body would raise ValueError (a 500); servers such as daphne
        # refuse this themselves, other front ends may pass it on.
        raise bad_argument(f"Content-Length {_short(declared)} is not a number of bytes.")
    if _content_length(request) > max_bytes:
        raise too_large(f"The body is larger than {max_bytes} bytes.")
    try:
        raw = request.body
    except RequestDataTooBig as exc:
        raise too_large(f"The body is larger than {max_bytes} bytes.") from exc
    if len(raw) > max_bytes:
        raise too_large(f"The body is larger than {max_bytes} bytes.")
    if not raw.strip():
        if required:
            raise missing_property("The body is empty; send a JSON object.")
        return None
    check_json_content_type(request)
    return parse_json(raw)


def parse_watermark(raw: str | None) -> int:
    """Return the watermark of a query string: absent or empty means 0, from the start."""
    if raw is None or raw == "":
        return 0
    if not _WATERMARK.fullmatch(raw) or int(raw) > MAX_WATERMARK:
        raise bad_argument(
            f"watermark must be a non-negative integer below 2**63 (e.g. watermark=12), "
            f"not {_short(raw)}."
        )
    return int(raw)


def check_watermark_within(watermark: int, conversation) -> None:
    """400 for a watermark the conversation never handed out (it only grows)."""
    if watermark > conversation.watermark:
        raise bad_argument(
            f"watermark {watermark} is ahead of the conversation (its watermark is "
            f"{conversation.watermark})."
        )


def _folded(name: str) -> str:
    """A display name as a reader sees it: compatibility forms, case, invisible characters
    and spaces do not make "Bot" another name ("ＢＯＴ", "b\u200bot", " bot ")."""
    name = unicodedata.normalize("NFKC", name).casefold()
    return "".join(c for c in name if not c.isspace() and unicodedata.category(c) != "Cf")


def check_display_name(name, where: str) -> None:
    """400 if a user's display name is one of ``RESERVED_USER_NAMES`` (the bot's): in the
    transcript, a user must not pass for the bot."""
    if not isinstance(name, str):
        return
    reserved = {_folded(reserved) for reserved in settings.reserved_user_names}
    if _folded(name) in reserved:
        raise bad_argument(
            f"{where} {_short(name)} is reserved for the bot; choose another display name."
        )


def _optional_string(value, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_USER_FIELD:
        raise bad_argument(f"{where} must be a string of at most {MAX_USER_FIELD} characters.")
    return value


def parse_user(body) -> tuple[str | None, str | None]:
    """Return ``(id, name)`` from a ``{"user": {"id", "name"}}`` body (both optional)."""
    if body is None:
        return None, None
    if not isinstance(body, dict):
        raise bad_argument('The body must be a JSON object such as {"user": {"id": "u1"}}.')
    user = body.get("user")
    if user is None:
        return None, None
    if not isinstance(user, dict):
        raise bad_argument('"user" must be an object such as {"id": "u1", "name": "Ann"}.')
    user_id = _optional_string(user.get("id"), "user.id") or None
    name = _optional_string(user.get("name"), "user.name")
    check_display_name(name, "user.name")
    return user_id, name


def parse_activity(value) -> dict:
    """Check the shape of a posted activity and return a copy (its ``from`` copied too).

    Only what the service relies on is checked; everything else, ``channelData`` first of
    all, is kept exactly as sent.
    """
    if not isinstance(value, dict):
        raise bad_argument("An activity must be a JSON object.")
    activity = dict(value)
    kind = activity.get("type")
    if kind is None:
        raise missing_property('The activity has no "type" (e.g. "message").')
    if not isinstance(kind, str) or not kind:
        raise bad_argument('The activity\'s "type" must be a non-empty string.')
    sender = activity.get("from")
    if sender is None:
        sender = {}
    if not isinstance(sender, dict):
        raise bad_argument('The activity\'s "from" must be an object such as {"id": "u1"}.')
    sender = dict(sender)
    _optional_string(sender.get("id"), "from.id")
    if sender.get("name") is not None and not isinstance(sender["name"], str):
        raise bad_argument("from.name must be a string.")
    activity["from"] = sender
    if activity.get("text") is not None and not isinstance(activity["text"], str):
        raise bad_argument('The activity\'s "text" must be a string.')
    attachments = activity.get("attachments")
    if attachments is not None and (
        not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments)
    ):
        raise bad_argument('"attachments" must be a list of objects.')
    return activity
