"""Backplane lag: an optional ``"ts"`` (publish time, ms) on wire v1 messages, read back.

The reference ignores the unknown field; only our own layout (``,"ts":<digits>}`` at the very
end) is recognised, so reading costs a slice and a search (see docs/backplane.md).
"""

_FIELD = b',"ts":'
_TAIL = 32  # bytes at the end of a payload that can hold the field


def stamp(payload, ms):
    """Return the wire v1 ``payload`` (as encoded) with ``"ts": ms`` appended."""
    if not payload.endswith(b"}"):
        raise ValueError("not an encoded wire v1 object")
    return b"%s%s%d}" % (payload[:-1], _FIELD, ms)


def read(payload):
    """Return the ``ts`` (ms) a payload was stamped with, or None."""
    tail = payload[-_TAIL:]
    at = tail.rfind(_FIELD)
    if at < 0 or not tail.endswith(b"}"):
        return None
    digits = tail[at + len(_FIELD):-1]
    if not digits.isdigit() or len(digits) > 16:
        return None
    return int(digits)
