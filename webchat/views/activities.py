"""``GET`` and ``POST /conversations/{id}/activities``: polling and sending.

A posted activity is echoed into the transcript with its ``id``, a server ``timestamp``,
``channelId`` ``directline``, ``from.role`` ``user`` and its ``channelData`` unchanged
(Web Chat matches ``channelData.clientActivityID``). With a token, ``from.id`` is the
token's user: the token is scoped to that user, so a different id in the body is replaced.
With the secret, the body must name the user.
"""

from functools import partial

from django.db import transaction
from django.http import HttpResponse, JsonResponse

from webchat.bot import bot_runner
from webchat.conf import settings
from webchat.pages import read_page
from webchat.transcript import append_activity

from .auth import Caller, authenticate, conversation_for
from .errors import directline_view, missing_property
from .payloads import (
    check_display_name,
    check_watermark_within,
    parse_activity,
    parse_watermark,
    read_json_body,
)
from .throttling import throttle
from .tokens import with_renewal, with_renewal_json


def activity_set(request, conversation, caller: Caller) -> HttpResponse:
    """The polling answer: a page of the activities after ``?watermark=`` (at most
    MAX_POLL_ACTIVITIES and MAX_POLL_BYTES, at least one) and the watermark of its last
    (and a renewed token once the caller's is stale)."""
    watermark = parse_watermark(request.GET.get("watermark"))
    check_watermark_within(watermark, conversation)
    page = read_page(
        conversation.id,
        watermark,
        limit=settings.max_poll_activities,
        max_bytes=settings.max_poll_bytes,
    )
    body = with_renewal_json(page.body(), caller, always=False)
    return HttpResponse(body, content_type="application/json")


def read_activity(request) -> dict:
    """The posted activity, checked (415, 413, 400 before anything is written)."""
    limit = settings.max_activity_bytes
    return parse_activity(read_json_body(request, limit, required=True))


def as_user(activity: dict, caller: Caller, user_id: str | None = None) -> dict:
    """Set ``from`` of a user's activity: the token's user, else the body's or ``user_id``."""
    sender = activity["from"]
    if caller.claims is not None:
        sender["id"] = caller.claims.user_id
        if caller.claims.user_name and not sender.get("name"):
            sender["name"] = caller.claims.user_name
    elif not sender.get("id"):
        if not user_id:
            raise missing_property(
                'Posting with the secret: name the user in "from": {"id": "..."}.'
            )
        sender["id"] = user_id
    check_display_name(sender.get("name"), "from.name")
    sender["role"] = "user"
    return activity


def store_user_activity(conversation, activity: dict) -> dict:
    """Write a user's activity and hand it to the bot once committed (never waiting)."""
    stored = append_activity(conversation, activity)
    transaction.on_commit(
        partial(bot_runner.submit, conversation.id, stored, conversation.tenant_id), robust=True
    )
    return stored


@directline_view("GET", "POST")
def conversation_activities(request, conversation_id):
    """GET: called by a polling client. POST: called by the client to send an activity."""
    caller = authenticate(request)
    conversation = conversation_for(caller, conversation_id)
    if request.method == "GET":
        return activity_set(request, conversation, caller)
    throttle(request, "posts", caller)
    activity = as_user(read_activity(request), caller)
    stored = store_user_activity(conversation, activity)
    return JsonResponse(with_renewal({"id": stored["id"]}, caller, always=True))
