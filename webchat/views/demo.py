"""The demo page at ``/``: the real Web Chat UI (botframework-webchat 4.18.1) and the echo bot.

Development only (DEBUG): the page, its token endpoint and the bundle answer 404 otherwise.
The page never sees a secret: it asks ``POST /demo/token`` (same-origin, CSRF-protected),
which mints a Direct Line token for the demo tenant on the server, exactly as a tenant's
own backend would with ``POST /v3/directline/tokens/generate``. ``?conversationId=`` in the
page URL joins an existing demo conversation, so one conversation can be watched on two
replicas at once (``scripts/cluster``).

The bundle is the npm package's ``dist/webchat.js``, copied by ``scripts/serve`` (and
``scripts/test``) into the git-ignored ``webchat/static/webchat/vendor/``; it is served by
a view here so the page works under plain daphne, which serves no static files.
"""

import json
import logging

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from webchat.conf import settings as webchat_settings
from webchat.models import Conversation, Tenant
from webchat.tokens import issue_token

from .auth import could_exist
from .tokens import new_user_id, token_body

logger = logging.getLogger(__name__)

DEMO_TENANT_NAME = "demo"
WEBCHAT_UI_VERSION = "4.18.1"
BUNDLE = "webchat/vendor/webchat.js"
MAX_TOKEN_REQUEST_BYTES = 4096


def require_demo():
    """Called first by every demo view: the demo exists in development only."""
    if not settings.DEBUG:
        raise Http404("The demo page is served with DEBUG=1 only.")


def demo_tenant() -> Tenant:
    """The demo tenant, created on first use. Two replicas racing both get the same row:
    get_or_create falls back to a read when the other one's insert wins."""
    tenant, created = Tenant.objects.get_or_create(name=DEMO_TENANT_NAME)
    if created:
        logger.info("Created the demo tenant %r (DEBUG only)", DEMO_TENANT_NAME)
    return tenant


def bundle_path():
    return finders.find(BUNDLE)


@require_GET
@ensure_csrf_cookie
def page(request):
    """``GET /``: the Web Chat UI. The CSRF cookie lets the page call ``/demo/token``."""
    require_demo()
    peers = webchat_settings.demo_peers
    context = {
        "bundle_installed": bundle_path() is not None,
        "webchat_version": WEBCHAT_UI_VERSION,
        "peers": [peer for peer in peers if peer != request.build_absolute_uri("/").rstrip("/")],
    }
    return render(request, "webchat/demo.html", context)


def _requested_conversation_id(request):
    if not request.body:
        return None
    if len(request.body) > MAX_TOKEN_REQUEST_BYTES:
        raise ValueError("The request body is too large.")
    try:
        body = json.loads(request.body)
    except RecursionError:  # not a ValueError: it would escape as a 500
        raise ValueError("The request body nests too deeply.") from None
    if not isinstance(body, dict):
        raise ValueError('Send a JSON object, e.g. {} or {"conversationId": "..."}.')
    conversation_id = body.get("conversationId")
    if conversation_id is not None and (
        not isinstance(conversation_id, str)
        or not conversation_id
        or not could_exist(conversation_id)  # long, NUL, lone surrogate: 500s in the query
    ):
        raise ValueError("conversationId must be a conversation id string.")
    return conversation_id


@require_POST
def token(request):
    """``POST /demo/token``: a token for a new demo conversation, or for the one named by
    ``{"conversationId": ...}``. Answers ``{conversationId, token, expires_in, userId}``."""
    require_demo()
    try:
        conversation_id = _requested_conversation_id(request)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        return JsonResponse({"error": {"code": "BadArgument", "message": str(exc)}}, status=400)
    tenant = demo_tenant()
    if conversation_id is None:
        conversation = Conversation.objects.create(tenant=tenant)
    else:
        conversation = Conversation.objects.filter(pk=conversation_id, tenant=tenant).first()
        if conversation is None:
            return JsonResponse(
                {
                    "error": {
                        "code": "NotFound",
                        "message": "No demo conversation has that id: open / for a new one.",
                    }
                },
                status=404,
            )
    user_id = new_user_id()
    token = issue_token(tenant.id, conversation.id, user_id, epoch=tenant.token_epoch)
    body = token_body(conversation.id, token)
    body["userId"] = user_id
    return JsonResponse(body)


@require_GET
def bundle(request):
    """``GET /demo/webchat.js``: the Web Chat bundle the setup step installed."""
    require_demo()
    found = bundle_path()
    if found is None:
        raise Http404("The Web Chat bundle is not installed: run ./scripts/serve.")
    # FileResponse closes the file once it is sent.
    stream = open(found, "rb")  # noqa: SIM115
    response = FileResponse(stream, content_type="text/javascript; charset=utf-8")
    # The URL carries the version (?v=), so a browser may keep it.
    response["Cache-Control"] = "public, max-age=86400"
    return response


urlpatterns = [
    path("", page, name="webchat-demo"),
    path("demo/token", token, name="webchat-demo-token"),
    path("demo/webchat.js", bundle, name="webchat-demo-bundle"),
]
