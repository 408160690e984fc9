"""Helpers for the attack suites: forged tokens, raw HTTP exchanges, database snapshots.

Forged tokens are built by hand (base64url JSON + HMAC) so that any header, algorithm or
signature can be written, including what PyJWT refuses to produce (``alg: none`` with a
signature, HS256 keyed with a PEM public key)::

    forge(claims, key=b"...", alg="HS256", header_extra={"jku": "https://evil"})
    tampered_tokens(claims, real_key, tenant_secret)   # [(name, token)], all must be refused

``raw_exchange(port, data)`` sends bytes on a fresh TCP connection and reads the answer until
the server closes it or ``timeout`` passes, for what an HTTP client library cannot send.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import sqlite3
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from webchat.tokens import ALGORITHM, ISSUER

_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims_for(tenant_id, conversation_id, user_id="user-1", **changes) -> dict:
    """The claims ``webchat.tokens.issue_token`` writes, with ``changes`` (None removes)."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "tid": str(tenant_id),
        "conv": conversation_id,
        "user": user_id,
        "iat": now,
        "exp": now + 1800,
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def forge(claims, key=None, alg=ALGORITHM, header_extra=None, signature=None) -> str:
    """A compact JWT with any header; signed with HMAC ``key`` for HS* algorithms, else
    with ``signature`` as given (empty by default)."""
    header = {"alg": alg, "typ": "JWT", **(header_extra or {})}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    if signature is None:
        if alg in _HASHES and key is not None:
            key_bytes = key if isinstance(key, bytes) else key.encode()
            digest = hmac.new(key_bytes, signing_input.encode(), _HASHES[alg]).digest()
            signature = b64url(digest)
        else:
            signature = ""
    return f"{signing_input}.{signature}"


def _rsa_keys():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def tampered_tokens(claims: dict, real_key: str, tenant_secret: str) -> list:
    """``(name, token)`` pairs that must all be refused (403 over REST, 4401 on the stream):
    unsigned, stripped, re-signed with keys an attacker has or guesses, asymmetric
    algorithms, key confusion, header tricks with an attacker's key, broken encodings."""
    real = forge(claims, real_key)
    head, body, signature = real.split(".")
    rsa_private, rsa_public = _rsa_keys()
    ec_private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    attacker = "an-attacker-key-that-is-32-bytes-long!"
    kid = {"kid": "../../dev/null"}
    jku = {"jku": "https://evil.example/jwks"}
    x5u = {"x5u": "https://evil.example/cert"}
    jwk = {"jwk": {"kty": "oct", "k": b64url(attacker.encode())}}
    tokens = [
        ("alg none, unsigned", forge(claims, alg="none")),
        ("alg None, unsigned", forge(claims, alg="None")),
        ("alg NONE, unsigned", forge(claims, alg="NONE")),
        ("alg none, real signature kept", forge(claims, alg="none", signature=signature)),
        ("no alg header", forge(claims, real_key, header_extra={"alg": None})),
        ("signature stripped", f"{head}.{body}."),
        ("signature and its dot stripped", f"{head}.{body}"),
        ("signature of another token", f"{head}.{body}.{forge({'x': 1}, real_key).split('.')[2]}"),
        ("signature truncated", f"{head}.{body}.{signature[:-4]}"),
        ("signature bit-flipped", f"{head}.{body}.{flip(signature)}"),
        ("claims swapped under the real signature", f"{head}.{b64url(b'{}')}.{signature}"),
        ("wrong key", forge(claims, attacker)),
        ("empty key", forge(claims, b"")),
        ("the tenant's Direct Line secret as key", forge(claims, tenant_secret)),
        ("the key reversed", forge(claims, real_key[::-1])),
        ("HS384 with the real key", forge(claims, real_key, alg="HS384")),
        ("HS512 with the real key", forge(claims, real_key, alg="HS512")),
        ("RS256", jwt.encode(claims, rsa_private, algorithm="RS256")),
        ("ES256", jwt.encode(claims, ec_private, algorithm="ES256")),
        ("HS256 keyed with an RSA public key (key confusion)", forge(claims, rsa_public)),
        ("kid pointing elsewhere, wrong key", forge(claims, attacker, header_extra=kid)),
        ("jku to an attacker's keys", forge(claims, attacker, header_extra=jku)),
        ("x5u to an attacker's certificate", forge(claims, attacker, header_extra=x5u)),
        ("embedded jwk of the attacker", forge(claims, attacker, header_extra=jwk)),
        ("header is not JSON", f"{b64url(b'not json')}.{body}.{signature}"),
        ("header is a JSON array", f"{b64url(b'[]')}.{body}.{signature}"),
        ("claims are not JSON", forge_raw_payload(b"not json", real_key)),
        ("claims are a JSON array", forge_raw_payload(b"[1,2]", real_key)),
        ("claims with NaN", forge_raw_payload(b'{"exp": NaN}', real_key)),
        ("base64 garbage", "@@@.###.$$$"),
        ("five segments", f"{real}.x.y"),
        ("only dots", ".."),
        ("a dot", "."),
        ("non-ASCII token", f"{head}é.{body}.{signature}"),
        ("padding added", f"{head}==.{body}.{signature}"),
        ("longer than any real token", forge({**claims, "pad": "x" * 5000}, real_key)),
    ]  # fmt: skip
    return tokens


def flip(signature: str) -> str:
    """``signature`` with its last base64url character changed."""
    return signature[:-1] + ("A" if signature[-1] != "A" else "B")


def forge_raw_payload(payload: bytes, key: str) -> str:
    """A token whose claims segment is ``payload`` verbatim, correctly HS256-signed."""
    signing_input = b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + b64url(payload)
    digest = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(digest)}"


def insider_tokens(claims: dict, key: str, other_conversation: str, other_tenant) -> list:
    """``(name, token)`` pairs correctly signed with the real key whose claims are wrong for
    ``claims``'s conversation: each must be refused, never a 5xx."""
    now = int(time.time())
    variants = [
        ("another conversation's conv", {"conv": other_conversation}),
        ("another tenant's tid", {"tid": str(other_tenant)}),
        ("tid not a number", {"tid": "tenant-a"}),
        ("tid an ARABIC-INDIC digit", {"tid": "\u0661"}),
        ("tid past a bigint", {"tid": "9" * 30}),
        ("tid negative", {"tid": "-1"}),
        ("tid an integer", {"tid": int(claims["tid"])}),
        ("conv an integer", {"conv": 1}),
        ("conv null", {"conv": None}),
        ("user an object", {"user": {"id": "x"}}),
        ("user missing", {"user": None}),
        ("name an object", {"name": {"first": "x"}}),
        ("iss missing", {"iss": None}),
        ("iss another issuer", {"iss": "someone-else"}),
        ("iss a list", {"iss": [ISSUER]}),
        ("tid missing", {"tid": None}),
        ("exp missing", {"exp": None}),
        ("iat missing", {"iat": None}),
        ("exp a string", {"exp": str(now + 1800)}),
        ("exp a boolean", {"exp": True}),
        ("exp in the past", {"exp": now - 60}),
        ("exp of 1e400 (infinity)", {"exp": float("inf")}),
        ("iat a string", {"iat": str(now)}),
        ("iat in the future", {"iat": now + 3600}),
        ("nbf in the future", {"nbf": now + 3600}),
        ("an audience nobody expects", {"aud": "webchat"}),
    ]
    return [(name, forge_claims(claims, changes, key)) for name, changes in variants]


def forge_claims(claims, changes, key):
    merged = {**claims, **changes}
    merged = {name: value for name, value in merged.items() if value is not None}
    # json.dumps writes inf as Infinity (not JSON): write the number serde would overflow on.
    payload = json.dumps(merged, separators=(",", ":")).replace("Infinity", "1e400").encode()
    return forge_raw_payload(payload, key)


@dataclass
class RawResponse:
    status: int | None  # None: the server closed or stayed silent without an answer
    head: bytes
    body: bytes
    timed_out: bool

    @property
    def json(self):
        return json.loads(self.body)


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> RawResponse:
    """Send ``data`` on a new connection to 127.0.0.1:``port`` and read until it closes.

    The write side stays open (Twisted drops a request whose client half-closed), so a
    request that never ends waits for the server or ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may refuse before reading it all: then read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks, timed_out = [], False
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                timed_out = True
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    status = None
    if head.startswith(b"HTTP/1."):
        status = int(head.split(b" ", 2)[1])
    return RawResponse(status, head, body, timed_out)


def _dechunk(body: bytes) -> bytes:
    out = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        body = rest[size + 2 :]
    return b"".join(out)


def request_bytes(method, path, headers=(), body=b"", host=b"127.0.0.1") -> bytes:
    """An HTTP/1.1 request as bytes; ``path`` and header values may hold any bytes."""
    lines = [b"%s %s HTTP/1.1" % (_b(method), _b(path)), b"Host: " + _b(host)]
    lines += [_b(name) + b": " + _b(value) for name, value in headers]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _b(value) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def sqlite_counts(database_url: str) -> dict:
    """Rows per table and every conversation's watermark, read from a replica's SQLite file."""
    path = urlsplit(database_url).path
    with sqlite3.connect(path, timeout=30) as connection:
        counts = {
            table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in (
                "webchat_activity",
                "webchat_conversation",
                "webchat_tenant",
                "webchat_tenantsecret",
            )
        }
        counts["watermarks"] = dict(
            connection.execute("SELECT id, watermark FROM webchat_conversation").fetchall()
        )
    connection.close()
    return counts
