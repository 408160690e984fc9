"""Signed wire (optional, off by default): HMAC-SHA256 with key ids over wire v1 messages.

With ``SIGNING_KEYS`` set, our publishers add ``"kid"`` and ``"sig"`` to every message and
resync request, and listeners drop what is unsigned or forged (``bad_signature``). The
format, precisely, is in docs/backplane.md.
"""

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections import Counter
from json.encoder import encode_basestring

from .memo import BoundedCache
from .signing_keys import (  # parse_keys and SigningConfigError: importable from here too
    KEY_ID_RE,
    MIN_SECRET_BYTES,
    SigningConfigError,
    keys_from_options,
    parse_keys,
)

SIG_LENGTH = 43  # base64url of 32 bytes, unpadded

U64_MAX = 2**64 - 1

_SIG_RE = re.compile(rb"[A-Za-z0-9_-]{43}")

# Our own publishers' layout, at the end of the payload; anything else is parsed as JSON.
_TAIL_RE = re.compile(
    rb',"kid":"([A-Za-z0-9._-]{1,24})","sig":"([^"\\]*)"(?:,"ts":(0|[1-9][0-9]{0,19}))?}\Z'
)
_TAIL = 180  # bytes at the end of a payload that can hold that layout


def _sig(secret, canonical):
    return base64.urlsafe_b64encode(hmac.digest(secret, canonical, hashlib.sha256))[:SIG_LENGTH]


def canonical_bytes(message, kid, ts=None):
    """The bytes a message's signature covers (see the module docstring).

    ``message``: a :class:`notifier.wire.WireMessage`; ``kid``: the key id; ``ts``: the
    ``ts`` member's value, or None when the message has none.
    """
    tail = f',"kid":"{kid}"}}' if ts is None else f',"kid":"{kid}","ts":{ts}}}'
    instance_id = _UUID_TEXT[message.instance_id.int]
    return (
        f'{{"tenant_id":{encode_basestring(message.tenant_id)},'
        f'"conversation_id":{encode_basestring(message.conversation_id)},'
        f'"new_watermark":{message.new_watermark},"version":{message.version},'
        f'"instance_id":"{instance_id}"{tail}'
    ).encode()


# Few replicas publish: remember the text of their instance ids.
_UUID_TEXT = BoundedCache(lambda instance_int: str(uuid.UUID(int=instance_int)), 1024)


def control_canonical_bytes(instance_id, reason, kid):
    """The bytes a resync request's signature covers."""
    return json.dumps({"resync": True, "instance_id": instance_id, "reason": reason,
                       "kid": kid}, separators=(",", ":")).encode()


class _Members(dict):
    """A decoded JSON object that remembers which keys occurred more than once."""

    __slots__ = ("repeated",)


def _members(pairs):
    # Python keeps the last of duplicate keys; a signature must not depend on which copy a
    # reader picks, so duplicates of the signature's members are refused.
    obj = _Members(pairs)
    obj.repeated = ()
    if len(obj) != len(pairs):
        obj.repeated = {key for key, count in Counter(k for k, _ in pairs).items() if count > 1}
    return obj


def _parse(payload):
    try:
        obj = json.loads(payload, object_pairs_hook=_members)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, _Members) else None


def _signature_members(payload):
    """``(kid, sig, ts)`` as found in ``payload`` (an already decoded wire v1 message), or a
    string saying why they are unusable."""
    # Our publishers' layout, read from the tail without a second JSON parse. The counts
    # make sure no other (nested, or duplicate) member has these names; else parse.
    match = _TAIL_RE.search(payload, max(0, len(payload) - _TAIL))
    if (match is not None and payload.count(b'"kid"') == 1 and payload.count(b'"sig"') == 1
            and payload.count(b'"ts"') == (match.group(3) is not None)):
        ts = match.group(3)
        ts = None if ts is None else int(ts)
        if ts is not None and ts > U64_MAX:
            return "ts is not a u64"
        return match.group(1).decode(), match.group(2), ts
    obj = _parse(payload)
    if obj is None:
        return "not a signed JSON object"
    for name in ("kid", "sig", "ts"):
        if name in obj.repeated:
            return f"duplicate {name!r}"
    kid, sig, ts = obj.get("kid"), obj.get("sig"), obj.get("ts")
    if kid is None or sig is None:
        return "unsigned"
    if type(kid) is not str or type(sig) is not str:
        return "kid and sig must be strings"
    if "ts" in obj and (type(ts) is not int or not 0 <= ts <= U64_MAX):
        return "ts is not a u64"
    return kid, sig.encode("utf-8", "surrogatepass"), ts


class Keyring:
    """The accepted keys and the one to sign with; signs and verifies messages.

    ``keys``: ``{key id: secret bytes}`` (see :func:`parse_keys`); ``signing_key_id``: the
    id publishers use. Built by :attr:`notifier.conf.NotifierSettings.signing`; the Redis
    notifier signs with it and its listener verifies with it. Its repr names key ids only.
    """

    def __init__(self, keys, signing_key_id):
        if signing_key_id not in keys:
            raise ValueError(f"signing key id {signing_key_id!r} is not one of the keys")
        self._keys = dict(keys)
        self.signing_key_id = signing_key_id
        self._secret = self._keys[signing_key_id]
        self._kid_member = f',"kid":"{signing_key_id}"'.encode()

    @classmethod
    def from_options(cls, keys, signing_key_id):
        """Validate the ``SIGNING_KEYS``/``SIGNING_KEY_ID`` values; None when keys are unset.

        Raises :class:`SigningConfigError` with the id of the system check (E030-E032).
        """
        options = keys_from_options(keys, signing_key_id)
        return None if options is None else cls(*options)

    @property
    def key_ids(self):
        """The accepted key ids, sorted."""
        return tuple(sorted(self._keys))

    def __repr__(self):
        return f"<Keyring signs with {self.signing_key_id!r}, accepts {list(self.key_ids)!r}>"

    # Publishing

    def sign(self, encoded, ts=None):
        """Return the payload to PUBLISH for ``encoded`` (the bytes of
        :func:`notifier.wire.encode`) and the publish timestamp ``ts`` (ms, or None).

        Called by the Redis notifier for every publish when keys are configured.
        """
        head = encoded[:-1] + self._kid_member
        tail = b"}" if ts is None else b',"ts":%d}' % ts
        sig = _sig(self._secret, head + tail)
        return b'%s,"sig":"%s"%s' % (head, sig, tail)

    def sign_control(self, instance_id, reason):
        """Return a signed resync request from ``instance_id`` (a str) for ``reason``."""
        kid = self.signing_key_id
        sig = _sig(self._secret, control_canonical_bytes(instance_id, reason, kid)).decode()
        return json.dumps({"resync": True, "instance_id": instance_id, "reason": reason,
                           "kid": kid, "sig": sig}, separators=(",", ":")).encode()

    # Listening

    def _check(self, kid, sig, canonical):
        # ``canonical`` is a callable: it is only built for a known key id, whose
        # characters are plain ASCII (an unknown one may hold anything).
        secret = self._keys.get(kid)
        if secret is None:
            return f"unknown key id {kid[:70]!r}"
        if len(sig) != SIG_LENGTH or _SIG_RE.fullmatch(sig) is None:
            return "sig is not 43 base64url characters"
        if not hmac.compare_digest(_sig(secret, canonical()), sig):
            return f"signature mismatch (key {kid!r})"
        return None

    def verify(self, message, payload):
        """Return None when ``payload`` (decoded as ``message``, a
        :class:`notifier.wire.WireMessage`) is signed with an accepted key, else why not.

        Called by the listener for every well-formed message, before the self-echo and
        version checks.
        """
        members = _signature_members(payload)
        if type(members) is str:
            return members
        kid, sig, ts = members
        return self._check(kid, sig, lambda: canonical_bytes(message, kid, ts))

    def verify_control(self, payload):
        """Return None when the resync request ``payload`` is signed with an accepted key,
        else why not. Called by the listener for every message on the control channel."""
        obj = _parse(payload)
        if obj is None:
            return "not a JSON object"
        if obj.repeated:
            return "duplicate members"
        kid, sig = obj.get("kid"), obj.get("sig")
        if kid is None or sig is None:
            return "unsigned"
        instance_id, reason = obj.get("instance_id"), obj.get("reason")
        if not all(type(value) is str for value in (kid, sig, instance_id, reason)) or \
                obj.get("resync") is not True:
            return "not a resync request"
        return self._check(kid, sig.encode("utf-8", "surrogatepass"),
                           lambda: control_canonical_bytes(instance_id, reason, kid))


__all__ = ["KEY_ID_RE", "MIN_SECRET_BYTES", "Keyring", "SigningConfigError", "canonical_bytes",
           "control_canonical_bytes", "parse_keys"]
