"""``POST /tokens/generate`` and ``POST /tokens/refresh``, and the renewed token other
answers carry.

generate is called by the tenant's own backend with the secret: it creates a conversation
and returns a token scoped to it (and to the user named in the body, or a new ``dl_`` id),
so the page that embeds Web Chat never sees the secret. refresh trades a token for the next
one of its session; the client calls it every 15 minutes. As in the seed, it also takes an
expired token while the conversation is alive (README "Token lifecycle").
"""

import json
import secrets

from django.http import JsonResponse

from webchat import queries, tokens
from webchat.conf import settings
from webchat.models import Conversation, Tenant
from webchat.tokens import issue_token, renew_token

from .auth import Caller, authenticate, continue_session, require_secret, require_token
from .errors import directline_view, not_found
from .payloads import parse_user, read_json_body
from .throttling import throttle

#: The key of the seed's renewal block in a JSON answer: ``{"renewed_token", "expires_in"}``.
RENEWAL_KEY = "_directline"


def new_user_id() -> str:
    """An id for a user the caller did not name (Azure uses the same ``dl_`` prefix)."""
    return "dl_" + secrets.token_urlsafe(12)


def token_body(conversation_id: str, token: str) -> dict:
    """``conversationId``, ``token`` and the seconds it has left (``expires_in``)."""
    return {"conversationId": conversation_id, "token": token, "expires_in": tokens.lifetime(token)}


def renewal(caller: Caller, *, always: bool) -> dict | None:
    """The seed's ``{renewed_token, expires_in}`` for an answer to a token, or None.

    The seed's contract (``directline_session.rs``): a POST of an activity always carries
    it; a poll only once the caller's token is past half its life or expired, so that
    frequent polls stay small. Called after the token's session was accepted.
    """
    if caller.claims is None or not (always or tokens.is_stale(caller.claims)):
        return None
    issued_at = tokens.now()
    return {
        "renewed_token": renew_token(caller.claims, at=issued_at),
        "expires_in": tokens.renewal_lifetime(caller.claims, issued_at),
    }


def with_renewal(body: dict, caller: Caller, *, always: bool) -> dict:
    """``body`` with ``_directline`` added when :func:`renewal` gives one."""
    renewed = renewal(caller, always=always)
    if renewed is not None:
        body[RENEWAL_KEY] = renewed
    return body


def with_renewal_json(body: str, caller: Caller, *, always: bool) -> str:
    """The same for an answer already encoded as a JSON object (a poll's page)."""
    renewed = renewal(caller, always=always)
    if renewed is None:
        return body
    return body[:-1] + ',"' + RENEWAL_KEY + '":' + json.dumps(renewed) + "}"


def session_conversation(claims) -> Conversation:
    """The conversation of a token used without a conversation id in the path (refresh,
    start), once its session is accepted; 404 if it is gone."""
    conversation = queries.conversation(claims.conversation_id)
    if conversation is None or str(conversation.tenant_id) != claims.tenant_id:
        raise not_found("The token's conversation no longer exists.")
    continue_session(claims, conversation)
    return conversation


@directline_view("POST")
def generate_token(request):
    """Called by the tenant's backend (secret): a new conversation and a token for it."""
    caller = authenticate(request)
    require_secret(caller, "tokens/generate")
    throttle(request, "conversations", caller)
    return new_conversation_token(request, caller.tenant_id, caller.token_epoch)


def new_conversation_token(request, tenant_id, epoch=None) -> JsonResponse:
    """A new conversation of ``tenant_id`` and the first token of its session, for the user
    in the body (or a new ``dl_`` user). ``epoch``: the tenant's token epoch when the caller
    already has it (``Caller.token_epoch``); None reads it."""
    user_id, user_name = parse_user(
        read_json_body(request, settings.max_activity_bytes, required=False)
    )
    if epoch is None:
        epoch = Tenant.objects.values_list("token_epoch", flat=True).get(pk=tenant_id)
    conversation = Conversation.objects.create(tenant_id=tenant_id)
    token = issue_token(
        tenant_id, conversation.id, user_id or new_user_id(), user_name, epoch=epoch
    )
    return JsonResponse(token_body(conversation.id, token))


@directline_view("POST")
def refresh_token(request):
    """Called by the client with its current token, even an expired one of a live
    conversation: the next token of the same session."""
    claims = require_token(authenticate(request), "tokens/refresh")
    conversation = session_conversation(claims)
    return JsonResponse(token_body(conversation.id, renew_token(claims)))
