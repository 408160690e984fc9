"""Signed wire (optional, off by default): HMAC-SHA256 with key ids over wire v1 messages.

Without keys, nothing here runs and the wire is exactly the reference's. With keys::

    WEBCHAT_NOTIFIER = {
        ...,
        "SIGNING_KEYS": {"k1": "<secret>", "k0": "<old secret>"},  # accepted key ids
        "SIGNING_KEY_ID": "k1",  # the one publishers sign with (optional with a single key)
    }

(or ``"SIGNING_KEYS": "k1:<secret>,k0:<old secret>"``, the form of the environment variable
``WEBCHAT_NOTIFIER_SIGNING_KEYS``), every message our publishers send carries two more
fields, and listeners drop messages that are unsigned or whose signature does not verify
with one of the accepted keys (counted ``bad_signature``). Anyone who can PUBLISH to Redis
can then no longer make replicas act. Key ids are 1-24 characters of ``A-Z a-z 0-9 . _ -``;
secrets are at least 32 bytes (a ``str`` counts as its UTF-8 bytes).

The format, precisely
---------------------

A signed message is a wire v1 object with two more members::

    "kid": the key id, a JSON string
    "sig": base64url (RFC 4648 section 5, no "=" padding: 43 characters) of
           HMAC-SHA256(secret of kid, canonical bytes)

The canonical bytes are the UTF-8 of this compact JSON, members in this order::

    {"tenant_id":T,"conversation_id":C,"new_watermark":W,"version":V,"instance_id":"U","kid":"K"}

with ``,"ts":N`` before the final ``}`` when the message has a ``ts`` member (the publish
timestamp of :mod:`notifier.lag`, a non-negative integer). T and C are escaped exactly as
:func:`notifier.wire.encode` (serde_json) writes strings: raw UTF-8, ``\\"``, ``\\\\``,
``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f``, other control characters as lowercase
``\\u00xx``; W, V and N are decimal integers; U is the lowercase hyphenated UUID. For a
version-1 message that is exactly the bytes ``encode()`` writes, with ``,"kid":"K"`` (and
``,"ts":N``) put before the closing brace. Our publishers send::

    {"tenant_id":..,"conversation_id":..,"new_watermark":..,"version":1,"instance_id":"..","kid":"k1","sig":"..","ts":1700000000123}

that is the canonical bytes with ``,"sig":".."`` inserted after ``kid`` (``ts`` stays last,
where :func:`notifier.lag.read` finds it).

A listener verifies by re-encoding the canonical bytes from the values it decoded and
comparing MACs with :func:`hmac.compare_digest`. So the received message's member order,
whitespace, string escapes and UUID spelling do not matter (another implementation may
serialise differently, as long as it MACs the canonical bytes), and members other than the
five fields, ``kid``, ``sig`` and ``ts`` are ignored, as the reference ignores them: they
are not covered. A message is refused (``bad_signature``) when ``kid`` or ``sig`` is missing
or not a string, ``kid`` names no accepted key, ``sig`` is not 43 base64url characters or
does not match, ``ts`` is not a u64 integer, ``kid``/``sig``/``ts`` occur twice, or the
payload is the array form of wire v1.

What a signature does not give: freshness. A captured signed message can be published
again; it only tells replicas to re-read from their cursors, which is idempotent.

Resync requests on ``<channel>:resync`` (:mod:`notifier.resync`) make every replica re-read
all its sockets, so they are signed the same way; their canonical bytes are
``{"resync":true,"instance_id":"U","reason":"R","kid":"K"}`` (``json.dumps`` with ASCII
escapes, compact). Probes (:mod:`notifier.probe`) are not signed: they travel on a channel
of the listener's own and only time a round trip; a forged probe can at most complete a
round trip early, which still proves the subscriber receives.
"""

import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections import Counter
from json.encoder import encode_basestring

logger = logging.getLogger(__name__)

#: Shortest secret accepted, in bytes (HMAC-SHA256's output size; RFC 2104 section 3).
MIN_SECRET_BYTES = 32

#: What a key id may look like: shorter than any secret, so that a key id shown in a message
#: (they are, secrets never are) cannot be a secret pasted in the wrong place.
KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,24}")

SIG_LENGTH = 43  # base64url of 32 bytes, unpadded

U64_MAX = 2**64 - 1

_SIG_RE = re.compile(rb"[A-Za-z0-9_-]{43}")

# Our own publishers' layout, at the end of the payload; anything else is parsed as JSON.
_TAIL_RE = re.compile(
    rb',"kid":"([A-Za-z0-9._-]{1,24})","sig":"([^"\\]*)"(?:,"ts":(0|[1-9][0-9]{0,19}))?}\Z'
)
_TAIL = 180  # bytes at the end of a payload that can hold that layout


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


def _sig(secret, canonical):
    return base64.urlsafe_b64encode(hmac.digest(secret, canonical, hashlib.sha256))[:SIG_LENGTH]


def canonical_bytes(message, kid, ts=None):
    """The bytes a message's signature covers (see the module docstring).

    ``message``: a :class:`notifier.wire.WireMessage`; ``kid``: the key id; ``ts``: the
    ``ts`` member's value, or None when the message has none.
    """
    tail = f',"kid":"{kid}"}}' if ts is None else f',"kid":"{kid}","ts":{ts}}}'
    instance_id = _uuid_text(message.instance_id.int)
    return (
        f'{{"tenant_id":{encode_basestring(message.tenant_id)},'
        f'"conversation_id":{encode_basestring(message.conversation_id)},'
        f'"new_watermark":{message.new_watermark},"version":{message.version},'
        f'"instance_id":"{instance_id}"{tail}'
    ).encode()


# Few replicas publish: remember the text of their instance ids.
@functools.lru_cache(maxsize=1024)
def _uuid_text(instance_int):
    return str(uuid.UUID(int=instance_int))


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
        if keys is None or keys == "" or keys == {}:
            if signing_key_id not in (None, ""):
                raise _key_id_error("SIGNING_KEY_ID is set but SIGNING_KEYS is not.")
            return None
        parsed = parse_keys(keys)
        if signing_key_id in (None, ""):
            if len(parsed) > 1:
                raise _key_id_error(f"SIGNING_KEYS has {len(parsed)} keys "
                                    f"({', '.join(sorted(parsed))}) and SIGNING_KEY_ID does not "
                                    "say which one signs.")
            signing_key_id = next(iter(parsed))
        elif not isinstance(signing_key_id, str) or signing_key_id not in parsed:
            shown = (repr(signing_key_id) if isinstance(signing_key_id, str)
                     and KEY_ID_RE.fullmatch(signing_key_id) else f"({_describe(signing_key_id)})")
            raise _key_id_error(f"SIGNING_KEY_ID {shown} is not one of SIGNING_KEYS "
                                f"({', '.join(sorted(parsed))}).")
        return cls(parsed, signing_key_id)

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


def _key_id_error(message):
    return SigningConfigError(
        message,
        check_id="notifier.E032",
        hint="Set SIGNING_KEY_ID to the id of the key publishers sign with, one of "
        "SIGNING_KEYS (env WEBCHAT_NOTIFIER_SIGNING_KEY_ID).",
    )

