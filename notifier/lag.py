"""Backplane lag: an optional publish timestamp on wire v1 messages, and reading it back.

Our publishers append ``"ts": <Unix time in ms>`` as the last field of the wire v1 object::

    {"tenant_id":"t","conversation_id":"c","new_watermark":5,"version":1,"instance_id":"...","ts":1700000000123}

The reference service reads wire v1 with serde and ignores unknown fields (as
:func:`notifier.wire.decode` does, per the shared vectors), so it still delivers these
messages; what :func:`notifier.wire.encode` writes for a message without a timestamp is
unchanged, byte for byte. A listener that finds the field observes ``now - ts`` as the
backplane lag (``webchat_backplane_lag_seconds``). The clocks of publisher and listener must
agree (NTP); a negative difference counts as 0. Messages of the reference carry no
timestamp and are simply not measured.

Only our own layout is recognised (``,"ts":<digits>}`` at the very end), so reading costs a
slice and a search on the delivery path, and no second JSON parse.
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
