"""Who is calling: ``Authorization: Bearer <secret or token>`` resolved to a tenant scope.

A tenant secret (what the bot's backend holds) reaches every conversation of its tenant.
A token (a JWT from ``webchat.tokens``) reaches one conversation as one user. A token or
secret of tenant A never touches tenant B's conversations: a secret gets 404 (B's ids do
not exist for it), a token for another conversation gets 403.

A token's expiry is decided with its conversation at hand (:func:`conversation_for`): an
expired token of a live conversation is still good (sliding renewal, README "Token
lifecycle"), a revoked one or one past its session's maximum lifetime is not.
"""

from dataclasses import dataclass

from webchat import queries, tokens
from webchat.models import Conversation, hash_secret
from webchat.tenant_paths import resolve_tenant, tenant_matches
from webchat.tokens import TokenClaims, TokenError, read_token

from .errors import DirectLineError, forbidden, not_found

#: Longer values are refused unread: secrets are 43 characters, our tokens a few hundred.
MAX_CREDENTIAL_LENGTH = 4096
CONVERSATION_ID_MAX_LENGTH = Conversation._meta.get_field("id").max_length


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a tenant, and the token's claims when it used a token.

    ``token_epoch``: the tenant's token epoch, known when the caller used a secret.
    """

    tenant_id: str
    claims: TokenClaims | None = None
    token_epoch: int | None = None

    @property
    def by_secret(self) -> bool:
        return self.claims is None


def bearer_credential(request) -> str:
    """Return the credential from the Authorization header, or raise 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if not header:
        raise DirectLineError(
            401, "Unauthorized", "Missing Authorization header: send 'Bearer <secret or token>'."
        )
    if scheme.lower() != "bearer" or not credential or " " in credential:
        raise DirectLineError(
            401, "Unauthorized", "Malformed Authorization header: send 'Bearer <secret or token>'."
        )
    return credential


def authenticate(request) -> Caller:
    """Resolve the caller of ``request`` (called first by every Bearer view)."""
    caller = authenticate_credential(bearer_credential(request))
    check_path_tenant(request, caller)
    return caller


def check_path_tenant(request, caller: Caller) -> None:
    """On the seed's layout (``webchat.tenant_paths``) the path's tenant must be the
    caller's: 404 if no tenant has that name or slug, 403 if it is another tenant."""
    segment = getattr(request, "path_tenant", None)
    if segment is None or tenant_matches(segment, caller.tenant_id):
        return
    if resolve_tenant(segment) is None:
        raise not_found(no_such_tenant(segment))
    raise forbidden(f"The credential is not for tenant {segment[:100]!r} of the path.")


def no_such_tenant(segment: str) -> str:
    return (
        f"No tenant {segment[:100]!r}: use the name given to create_tenant or its slug "
        "(a slug that several tenants share names none of them)."
    )


def authenticate_credential(credential: str) -> Caller:
    """Resolve a secret or token to its caller.

    Tokens are JWTs (they contain dots); secrets are URL-safe base64 without dots.
    Raises 403 for an unknown or revoked secret, or a token that does not verify
    (``BadArgument``). An expired token passes here: :func:`continue_session` decides.
    """
    if len(credential) > MAX_CREDENTIAL_LENGTH:
        raise forbidden("The secret or token is not valid.")
    if "." in credential:
        try:
            claims = read_token(credential, allow_expired=True)
        except TokenError as exc:
            raise DirectLineError(403, exc.code, exc.message) from exc
        if not claims.tenant_id.isdigit():
            raise DirectLineError(403, "BadArgument", "The token is not valid.")
        return Caller(tenant_id=claims.tenant_id, claims=claims)
    found = queries.tenant_for_secret(hash_secret(credential))
    if found is None:
        raise forbidden("Unknown or revoked secret.")
    return Caller(tenant_id=str(found[0]), token_epoch=found[1])


def require_secret(caller: Caller, what: str) -> None:
    if not caller.by_secret:
        raise forbidden(f"{what} needs the tenant secret, not a token.")


def require_token(caller: Caller, what: str) -> TokenClaims:
    if caller.by_secret:
        raise forbidden(f"{what} needs a token; a secret does not expire and needs no refresh.")
    return caller.claims


def could_exist(conversation_id: str) -> bool:
    """Whether a conversation could have this id: not longer than the column, no NUL, no lone
    surrogate (databases refuse those even in a query: a 500 rather than the 404 it is)."""
    if len(conversation_id) > CONVERSATION_ID_MAX_LENGTH or "\x00" in conversation_id:
        return False
    return conversation_id.isascii() or not _has_surrogate(conversation_id)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def conversation_for(caller: Caller, conversation_id: str) -> Conversation:
    """Return the conversation ``conversation_id`` if the caller may use it.

    A token is scoped to one conversation of one tenant: 403 for any other. For a secret,
    another tenant's conversation does not exist: 404, like an unknown id.
    """
    if caller.claims is not None and caller.claims.conversation_id != conversation_id:
        raise forbidden("The token is for another conversation.")
    if not could_exist(conversation_id):
        raise not_found(f"Conversation {conversation_id[:100]!r} not found.")
    conversation = queries.conversation(conversation_id)
    if conversation is not None and str(conversation.tenant_id) != caller.tenant_id:
        if caller.claims is not None:
            raise forbidden("The token is for another tenant.")
        conversation = None
    if conversation is None:
        raise not_found(f"Conversation {conversation_id[:100]!r} not found.")
    if caller.claims is not None:
        continue_session(caller.claims, conversation)
    return conversation


def continue_session(claims: TokenClaims, conversation: Conversation) -> None:
    """Called with a token's conversation (loaded by ``queries.conversation``): refuse the
    token (403 ``TokenExpired``) unless its session goes on, then record that the client
    was here, which keeps the conversation alive for another TTL."""
    try:
        tokens.check_session(claims, conversation.tenant_token_epoch, conversation.last_seen)
    except TokenError as exc:
        raise DirectLineError(403, exc.code, exc.message) from exc
    if tokens.needs_touch(conversation.last_seen):
        seen_at = tokens.now()
        queries.touch_conversation(conversation.id, seen_at)
        conversation.last_seen = seen_at
