"""Signing keys from settings: ``SIGNING_KEYS`` and ``SIGNING_KEY_ID`` parsed and checked.

Errors carry the id of the system check that reports them (``notifier.E030``-``E032``) and
name key ids and lengths, never a secret.
"""

import re

#: Shortest secret accepted, in bytes (HMAC-SHA256's output size; RFC 2104 section 3).
MIN_SECRET_BYTES = 32

#: What a key id may look like: shorter than any secret, so that a key id shown in a message
#: (they are, secrets never are) cannot be a secret pasted in the wrong place.
KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,24}")

class SigningConfigError(ValueError):
    """The signing keys cannot be used; ``check_id`` names the system check."""

    def __init__(self, message, *, check_id, hint):
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint


def _describe(value):
    if isinstance(value, str):
        return f"{len(value)} characters; use 1-24 of A-Z a-z 0-9 . _ -"
    return f"a {type(value).__name__}, not a str"


def _keys_error(message):
    return SigningConfigError(
        message,
        check_id="notifier.E030",
        hint='Set SIGNING_KEYS to a dict of key id to secret, e.g. {"k1": "<secret>"}, or to '
        '"k1:<secret>,k0:<old secret>"; key ids are 1-24 characters of A-Z a-z 0-9 . _ -.',
    )


def parse_keys(value):
    """Return ``{key id: secret bytes}`` from a ``SIGNING_KEYS`` value (dict or string).

    Raises :class:`SigningConfigError` (E030 for the shape, E031 for a short secret). The
    messages name key ids and lengths, never a secret.
    """
    if isinstance(value, str):
        items = []
        for number, item in enumerate(value.split(","), 1):
            item = item.strip()
            if not item:
                continue
            kid, sep, secret = item.partition(":")
            if not sep:
                raise _keys_error(f"SIGNING_KEYS item {number} has no ':' between key id and "
                                  "secret.")
            items.append((kid.strip(), secret))
        seen = [kid for kid, _ in items]
        for kid in seen:
            if seen.count(kid) > 1:
                raise _keys_error(f"SIGNING_KEYS names key id {kid!r} twice.")
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        raise _keys_error(f"SIGNING_KEYS must be a dict or a string, not {type(value).__name__}.")
    if not items:
        raise _keys_error("SIGNING_KEYS is empty.")
    keys = {}
    for kid, secret in items:
        if not isinstance(kid, str) or KEY_ID_RE.fullmatch(kid) is None:
            # Not echoed: a mangled "id:secret" pair may have put the secret there.
            raise _keys_error(f"SIGNING_KEYS has an invalid key id ({_describe(kid)}).")
        if isinstance(secret, str):
            secret = secret.encode("utf-8", "surrogatepass")
        elif not isinstance(secret, (bytes, bytearray)):
            raise _keys_error(f"The secret of signing key {kid!r} must be a str or bytes, not "
                              f"{type(secret).__name__}.")
        if len(secret) < MIN_SECRET_BYTES:
            raise SigningConfigError(
                f"The secret of signing key {kid!r} is {'empty' if not secret else 'too short'}"
                f" ({len(secret)} bytes; at least {MIN_SECRET_BYTES} are needed).",
                check_id="notifier.E031",
                hint="Use a random secret of 32 bytes or more, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
            )
        keys[kid] = bytes(secret)
    return keys


def _key_id_error(message):
    return SigningConfigError(
        message,
        check_id="notifier.E032",
        hint="Set SIGNING_KEY_ID to the id of the key publishers sign with, one of "
        "SIGNING_KEYS (env WEBCHAT_NOTIFIER_SIGNING_KEY_ID).",
    )


def keys_from_options(keys, signing_key_id):
    """Return ``(keys, signing key id)`` from the settings' values, or None when keys are
    unset; raise :class:`SigningConfigError`."""
    if keys is None or keys == "" or keys == {}:
        if signing_key_id not in (None, ""):
            raise _key_id_error("SIGNING_KEY_ID is set but SIGNING_KEYS is not.")
        return None
    parsed = parse_keys(keys)
    if signing_key_id in (None, ""):
        if len(parsed) > 1:
            raise _key_id_error(f"SIGNING_KEYS has {len(parsed)} keys "
                                 f"({', '.join(sorted(parsed))}) and SIGNING_KEY_ID does "
                                 "not say which one signs.")
        signing_key_id = next(iter(parsed))
    elif not isinstance(signing_key_id, str) or signing_key_id not in parsed:
        shown = (repr(signing_key_id) if isinstance(signing_key_id, str)
                 and KEY_ID_RE.fullmatch(signing_key_id) else f"({_describe(signing_key_id)})")
        raise _key_id_error(f"SIGNING_KEY_ID {shown} is not one of SIGNING_KEYS "
                             f"({', '.join(sorted(parsed))}).")
    return parsed, signing_key_id
