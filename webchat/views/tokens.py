"""``POST /tokens/generate`` and ``POST /tokens/refresh``.

generate is called by the tenant's own backend with the secret: it creates a conversation
and returns a token scoped to it (and to the user named in the body, or a new ``dl_`` id),
so the page that embeds Web Chat never sees the secret. refresh trades a live token for a
new one; the client calls it every 15 minutes.
"""

import secrets

from django.http import JsonResponse

from webchat.conf import settings
from webchat.models import Conversation
from webchat.tokens import EXPIRES_IN, issue_token

from .auth import authenticate, require_secret, require_token
from .errors import directline_view, not_found
from .payloads import parse_user, read_json_body
from .throttling import throttle


def new_user_id() -> str:
    """An id for a user the caller did not name (Azure uses the same ``dl_`` prefix)."""
    return "dl_" + secrets.token_urlsafe(12)


def token_body(conversation_id: str, token: str) -> dict:
    return {"conversationId": conversation_id, "token": token, "expires_in": EXPIRES_IN}


@directline_view("POST")
def generate_token(request):
    """Called by the tenant's backend (secret): a new conversation and a token for it."""
    caller = authenticate(request)
    require_secret(caller, "tokens/generate")
    throttle(request, "conversations", caller)
    return new_conversation_token(request, caller.tenant_id)


def new_conversation_token(request, tenant_id) -> JsonResponse:
    """A new conversation of ``tenant_id`` and a token for the user in the body (or a new
    ``dl_`` user): tokens/generate, and the seed's ``token`` endpoint."""
    user_id, user_name = parse_user(
        read_json_body(request, settings.max_activity_bytes, required=False)
    )
    conversation = Conversation.objects.create(tenant_id=tenant_id)
    token = issue_token(tenant_id, conversation.id, user_id or new_user_id(), user_name)
    return JsonResponse(token_body(conversation.id, token))


@directline_view("POST")
def refresh_token(request):
    """Called by the client with its current token: a new token, same scope."""
    claims = require_token(authenticate(request), "tokens/refresh")
    if not Conversation.objects.filter(
        pk=claims.conversation_id, tenant_id=claims.tenant_id
    ).exists():
        raise not_found("The token's conversation no longer exists.")
    token = issue_token(claims.tenant_id, claims.conversation_id, claims.user_id, claims.user_name)
    return JsonResponse(token_body(claims.conversation_id, token))
