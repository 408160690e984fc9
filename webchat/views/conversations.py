"""``POST /conversations`` (start) and ``GET /conversations/{id}`` (reconnect).

Both answer with a fresh token and the ``streamUrl`` the client opens next. The client
keeps using its secret if it has one, otherwise it replaces its token with ours.
"""

from urllib.parse import quote, urlencode

from django.http import JsonResponse

from webchat import conversation_dedup
from webchat.conf import settings
from webchat.models import Conversation
from webchat.tenant_paths import directline_base
from webchat.tokens import issue_token, renew_token

from .auth import authenticate, conversation_for
from .errors import directline_view
from .payloads import check_watermark_within, parse_user, parse_watermark, read_json_body
from .throttling import throttle
from .tokens import new_user_id, session_conversation, token_body

#: Query parameters of the streamUrl, read by ``webchat.consumers``.
STREAM_TOKEN_PARAM = "t"
STREAM_WATERMARK_PARAM = "watermark"


def public_scheme(request) -> str:
    """``https`` or ``http`` as the client sees it; a proxy's ``X-Forwarded-Proto`` wins.

    The header only shapes URLs handed back to the client, so it is honoured as sent (its
    first value, when a chain of proxies appended several).
    """
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if forwarded in {"https", "wss"}:
        return "https"
    if forwarded in {"http", "ws"}:
        return "http"
    return "https" if request.is_secure() else "http"


def websocket_scheme(request) -> str:
    """``wss`` behind TLS, ``ws`` otherwise."""
    return "wss" if public_scheme(request) == "https" else "ws"


def stream_url(request, conversation_id: str, token: str, watermark: int | None) -> str:
    """The absolute WebSocket URL of a conversation's stream, on the host the client used.

    ``watermark`` None (a new conversation) is sent as ``watermark=``: from the start.
    """
    query = urlencode(
        {
            STREAM_WATERMARK_PARAM: "" if watermark is None else str(watermark),
            STREAM_TOKEN_PARAM: token,
        }
    )
    # On the seed's layout the stream is under the tenant's prefix too (webchat.tenant_paths).
    path = f"{directline_base(request)}/conversations/{quote(conversation_id, safe='')}/stream"
    return f"{websocket_scheme(request)}://{request.get_host()}{path}?{query}"


def conversation_body(request, conversation_id: str, token: str, watermark=None) -> dict:
    body = token_body(conversation_id, token)
    body["streamUrl"] = stream_url(request, conversation_id, token, watermark)
    return body


@directline_view("POST")
def start_conversation(request):
    """Called by the client to start: with a token from generate, that conversation;
    with the secret, a new one for the user in the body (or a new ``dl_`` user)."""
    caller = authenticate(request)
    user_id, user_name = parse_user(
        read_json_body(request, settings.max_activity_bytes, required=False)
    )
    if caller.claims is not None:
        # The token names the user (a different user in the body cannot override it), and
        # its session goes on.
        conversation = session_conversation(caller.claims)
        token = renew_token(caller.claims)
        return JsonResponse(conversation_body(request, conversation.id, token), status=201)
    throttle(request, "conversations", caller)
    if user_id and settings.conversation_dedup_seconds:
        # The same user starting twice within the window: one conversation (on any replica).
        window = settings.conversation_dedup_seconds
        conversation = conversation_dedup.start_conversation(caller.tenant_id, user_id, window)
    else:
        conversation = Conversation.objects.create(tenant_id=caller.tenant_id)
        user_id = user_id or new_user_id()
    token = issue_token(
        caller.tenant_id, conversation.id, user_id, user_name, epoch=caller.token_epoch
    )
    return JsonResponse(conversation_body(request, conversation.id, token), status=201)


@directline_view("GET")
def get_conversation(request, conversation_id):
    """Called by the client to reconnect: the next token of its session (the client adopts
    it) and a streamUrl from ``watermark``."""
    caller = authenticate(request)
    watermark = parse_watermark(request.GET.get("watermark"))
    conversation = conversation_for(caller, conversation_id)
    check_watermark_within(watermark, conversation)
    if caller.claims is not None:
        token = renew_token(caller.claims)
    else:
        # A secret names no user; the token only opens the stream (the client keeps its
        # secret for REST calls).
        token = issue_token(
            caller.tenant_id, conversation.id, new_user_id(), epoch=caller.token_epoch
        )
    raw = request.GET.get("watermark")
    return JsonResponse(
        conversation_body(request, conversation.id, token, watermark if raw else None)
    )
