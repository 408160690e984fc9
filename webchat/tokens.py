"""Direct Line tokens: JWTs (HS256) scoped to one tenant, conversation and user.

The lifecycle (README "Token lifecycle"): a token lives ``TTL`` seconds (``WEBCHAT_TOKENS``
in ``webchat.conf``). While its conversation is alive, i.e. a client used it within the
last ``TTL`` seconds, an expired token is still accepted, and every accepted call can hand
back a renewed one: a sliding window, as in the seed. Nothing extends a session past
``MAX_SESSION`` seconds after its first token, and a token minted before its tenant's token
epoch was bumped (a secret revoked or rotated) is refused.

The API other modules use:

- :func:`issue_token`: a new session's first token (the caller authenticated with a secret);
- :func:`read_token`: verify the signature and shape (``allow_expired`` for REST calls);
- :func:`check_session`: is a token's session still usable, given its conversation;
- :func:`renew_token`: the same session's next token;
- :func:`is_stale`, :func:`needs_touch`: when to renew, and when to record the client;
- :func:`lifetime`, :func:`renewal_lifetime`: the ``expires_in`` of a token just issued.
"""

import math
import time
from dataclasses import dataclass

import jwt
from django.core.checks import Warning
from django.core.exceptions import ImproperlyConfigured

from . import dev_key
from .conf import SEED_MIN_TTL
from .conf import settings as webchat_settings

ALGORITHM = "HS256"
ISSUER = "webchat-directline"
#: Ours are a few hundred characters (ids and names are bounded); longer ones are refused
#: before any decoding, on the stream as over REST.
MAX_TOKEN_LENGTH = 4096


class TokenError(Exception):
    """The token cannot be used. ``code`` is the Direct Line error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TokenClaims:
    tenant_id: str
    conversation_id: str
    user_id: str
    user_name: str | None
    expires_at: int
    issued_at: int = 0
    #: When the session's first token was issued: the start of its ``MAX_SESSION``.
    session_start: int = 0
    #: The tenant's token epoch when the session began.
    epoch: int = 0

    def expired(self, now: int) -> bool:
        return now >= self.expires_at


def signing_key() -> str:
    """The HS256 key: ``WEBCHAT_TOKEN_SIGNING_KEY``, else (development) the install's own
    random key (``webchat.dev_key``). Never ``SECRET_KEY``, whose development default is
    public."""
    key = webchat_settings.token_signing_key
    if key:
        return key
    path = webchat_settings.dev_key_file
    if path:
        return dev_key.read_or_create(path)
    raise ImproperlyConfigured(
        "No token signing key: set WEBCHAT_TOKEN_SIGNING_KEY (or, in development, "
        "WEBCHAT_DEV_KEY_FILE)."
    )


def now() -> int:
    return int(time.time())


def _encode(claims: dict) -> str:
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM)


def _expiry(issued_at: int, session_start: int) -> int:
    """A token's ``exp``: a full TTL, but never past the session's end."""
    return min(
        issued_at + webchat_settings.token_ttl, session_start + webchat_settings.token_max_session
    )


def issue_token(
    tenant_id, conversation_id: str, user_id: str, user_name=None, *, epoch=0, at=None
) -> str:
    """The first token of a new session (called after authenticating with a secret).

    ``epoch`` is the tenant's current token epoch (``Tenant.token_epoch``; 0 until a secret
    is revoked): a token with an older one is refused, so a wrong value fails closed.
    ``at`` (Unix seconds) backdates the token, for tests of expiry; None is now.
    """
    issued_at = now() if at is None else int(at)
    claims = {
        "iss": ISSUER,
        "tid": str(tenant_id),
        "conv": conversation_id,
        # Web Chat reads a ``user`` claim as the user id.
        "user": user_id,
        "iat": issued_at,
        "exp": _expiry(issued_at, issued_at),
        "ses": issued_at,
        "ep": int(epoch),
    }
    if user_name:
        claims["name"] = user_name
    return _encode(claims)


def renew_token(claims: TokenClaims, *, at=None) -> str:
    """The next token of ``claims``' session: same scope, start and epoch, a new expiry.

    Call it only after :func:`check_session` accepted ``claims``.
    """
    issued_at = now() if at is None else int(at)
    renewed = {
        "iss": ISSUER,
        "tid": claims.tenant_id,
        "conv": claims.conversation_id,
        "user": claims.user_id,
        "iat": issued_at,
        "exp": _expiry(issued_at, claims.session_start),
        "ses": claims.session_start,
        "ep": claims.epoch,
    }
    if claims.user_name:
        renewed["name"] = claims.user_name
    return _encode(renewed)


def lifetime(token: str) -> int:
    """A token's ``exp`` minus its ``iat``: the ``expires_in`` to report with a token just
    issued (a full TTL, or less near its session's end)."""
    claims = read_token(token, allow_expired=True)
    return max(0, claims.expires_at - claims.issued_at)


def renewal_lifetime(claims: TokenClaims, issued_at: int) -> int:
    """:func:`lifetime` of ``renew_token(claims, at=issued_at)``, without reading it back."""
    return max(0, _expiry(issued_at, claims.session_start) - issued_at)


def _is_number(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _claims_well_formed(claims: dict) -> bool:
    """Whether verified claims have the shapes ``issue_token`` writes.

    Only a holder of the signing key can get here with other shapes, but PyJWT is lenient
    (it takes ``"exp": "1700000000"``), and ``int()`` reads ``"\u0661"`` (ARABIC-INDIC ONE)
    as tenant 1, while a tenant id past a bigint fails in the database: keep them all out.
    ``ses`` and ``ep`` are absent from tokens issued before sessions were bounded.
    """
    tenant_id = claims["tid"]
    name = claims.get("name")
    return (
        all(isinstance(claims[key], str) for key in ("tid", "conv", "user"))
        and tenant_id.isascii()
        and tenant_id.isdigit()
        and len(tenant_id) <= 18
        and (name is None or isinstance(name, str))
        and _is_number(claims["exp"])
        and _is_number(claims["iat"])
        and _is_number(claims.get("ses", 0))
        and isinstance(claims.get("ep", 0), int)
        and not isinstance(claims.get("ep", 0), bool)
    )


def read_token(token: str, *, allow_expired: bool = False) -> TokenClaims:
    """Verify ``token`` and return its claims, or raise TokenError.

    ``allow_expired``: return an expired token's claims too, for :func:`check_session` to
    decide on (REST calls); without it an expired token is ``TokenExpired`` (the stream).
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("BadArgument", "The token is not valid.")
    try:
        claims = jwt.decode(
            token,
            signing_key(),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={
                "require": ["exp", "iat", "iss", "tid", "conv", "user"],
                "verify_exp": not allow_expired,
            },
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("TokenExpired", "The token has expired.") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError("BadArgument", "The token is not valid.") from exc
    if not _claims_well_formed(claims):
        raise TokenError("BadArgument", "The token is not valid.")
    return TokenClaims(
        tenant_id=claims["tid"],
        conversation_id=claims["conv"],
        user_id=claims["user"],
        user_name=claims.get("name"),
        expires_at=int(claims["exp"]),
        issued_at=int(claims["iat"]),
        session_start=int(claims.get("ses", claims["iat"])),
        epoch=claims.get("ep", 0),
    )


def check_session(claims: TokenClaims, tenant_epoch: int, last_seen: int, *, at=None) -> None:
    """Raise ``TokenExpired`` unless the token's session may go on.

    ``tenant_epoch`` and ``last_seen`` come from the token's conversation (same tenant,
    already checked). Refused: a token from before the tenant's epoch was bumped; any token
    once its session is ``MAX_SESSION`` old; an expired token whose conversation saw no
    client for ``TTL`` seconds. An expired token of a live conversation is accepted: the
    client is still there, and its next call gets a renewed token.
    """
    moment = now() if at is None else at
    ttl, longest = webchat_settings.token_ttl, webchat_settings.token_max_session
    if claims.epoch != tenant_epoch:
        raise TokenError(
            "TokenExpired", "The token was revoked: its tenant's secrets were rotated or revoked."
        )
    if moment >= claims.session_start + longest:
        raise TokenError(
            "TokenExpired",
            f"The session reached its maximum lifetime ({longest} s): start a new conversation.",
        )
    if claims.expired(moment) and moment - last_seen >= ttl:
        raise TokenError(
            "TokenExpired",
            f"The token has expired and its conversation saw no client for {ttl} s.",
        )


def is_stale(claims: TokenClaims, *, at=None) -> bool:
    """Past half its lifetime, or expired: worth handing back a renewed token (the seed's
    rule for polls)."""
    moment = now() if at is None else at
    lifetime = claims.expires_at - claims.issued_at
    return lifetime <= 0 or (claims.expires_at - moment) * 2 <= lifetime


def needs_touch(last_seen: int, *, at=None) -> bool:
    """Whether a conversation's ``last_seen`` is old enough to be written again."""
    moment = now() if at is None else at
    return moment - last_seen >= webchat_settings.token_touch_every


def check_short_ttl(app_configs=None, **kwargs):
    """``webchat.W050``: a TTL under the seed's 60 s is for tests only."""
    try:
        ttl = webchat_settings.token_ttl
    except ImproperlyConfigured:
        return []  # reported as webchat.E050
    if ttl >= SEED_MIN_TTL:
        return []
    return [
        Warning(
            f"WEBCHAT_TOKENS['TTL'] is {ttl} s, under {SEED_MIN_TTL} s: meant for tests only.",
            hint="Clients refresh every 15 minutes; sliding renewal keeps active "
            "conversations alive, but every pause longer than the TTL ends one.",
            id="webchat.W050",
        )
    ]
