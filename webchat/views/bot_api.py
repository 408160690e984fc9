"""The bot API: a bot running elsewhere reads and writes its tenant's conversations.

``POST /v3/directline/bot/conversations/{id}/activities`` with ``Authorization: Bearer
<tenant secret>`` writes an activity as the bot (``from.role`` ``"bot"``, ``from`` defaults
to the bot account) and returns ``{"id"}``; ``GET`` on the same path with ``?watermark=``
returns ``{"activities", "watermark"}`` like polling. Any replica serves it: the activity
goes through the transcript, whose notification reaches every replica's sockets. The
in-process bot does not answer bot activities. User tokens are refused: they act for one
user, never for the bot.
"""

from django.http import JsonResponse

from webchat.bot import BOT_ACCOUNT
from webchat.transcript import append_activity

from .activities import activity_set, read_activity
from .auth import authenticate, conversation_for, require_secret
from .errors import directline_view


def as_bot(activity: dict) -> dict:
    sender = activity["from"] or dict(BOT_ACCOUNT)
    if not sender.get("id"):
        sender["id"] = BOT_ACCOUNT["id"]
    sender["role"] = "bot"
    activity["from"] = sender
    return activity


@directline_view("GET", "POST")
def bot_activities(request, conversation_id):
    """GET: called by a bot catching up. POST: called by a bot to send an activity."""
    caller = authenticate(request)
    require_secret(caller, "The bot API")
    conversation = conversation_for(caller, conversation_id)
    if request.method == "GET":
        return activity_set(request, conversation, caller)
    stored = append_activity(conversation, as_bot(read_activity(request)))
    return JsonResponse({"id": stored["id"]})
