"""Direct Line tokens: JWTs (HS256) scoped to one tenant, conversation and user."""

import time
from dataclasses import dataclass

import jwt
from django.conf import settings

from .conf import settings as webchat_settings

EXPIRES_IN = 1800
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


def signing_key() -> str:
    return webchat_settings.token_signing_key or settings.SECRET_KEY


def issue_token(tenant_id, conversation_id: str, user_id: str, user_name=None) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "tid": str(tenant_id),
        "conv": conversation_id,
        # Web Chat reads a ``user`` claim as the user id.
        "user": user_id,
        "iat": now,
        "exp": now + EXPIRES_IN,
    }
    if user_name:
        claims["name"] = user_name
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _claims_well_formed(claims: dict) -> bool:
    """Whether verified claims have the shapes ``issue_token`` writes.

    Only a holder of the signing key can get here with other shapes, but PyJWT is lenient
    (it takes ``"exp": "1700000000"``), and ``int()`` reads ``"\u0661"`` (ARABIC-INDIC ONE)
    as tenant 1, while a tenant id past a bigint fails in the database: keep them all out.
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
    )


def read_token(token: str) -> TokenClaims:
    """Verify ``token`` and return its claims, or raise TokenError."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("BadArgument", "The token is not valid.")
    try:
        claims = jwt.decode(
            token,
            signing_key(),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "tid", "conv", "user"]},
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
        expires_at=claims["exp"],
    )
