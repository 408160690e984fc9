"""Helpers for the stream consumer tests: data, tokens, communicators, frame checks."""

import json
import time

import jwt
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import re_path

from notifier.events import NotifyEvent, group_name, watermark_message
from webchat.consumers import StreamConsumer
from webchat.models import Activity, Conversation, Tenant
from webchat.tokens import ALGORITHM, ISSUER, issue_token, signing_key
from webchat.transcript import activity_id, append_activity

#: Generous: the machine is shared; nothing here measures speed.
TIMEOUT = 5


class RecordingStreamConsumer(StreamConsumer):
    """The real consumer, remembered so tests can read its counters (e.g. ``reads``)."""

    instances = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingStreamConsumer.instances.append(self)


recording_application = URLRouter(
    [
        re_path(
            r"^v3/directline/conversations/(?P<conversation_id>[^/]+)/stream$",
            RecordingStreamConsumer.as_asgi(),
        )
    ]
)


def make_conversation(tenant_name="acme"):
    tenant, _ = Tenant.objects.get_or_create(name=tenant_name)
    return Conversation.objects.create(tenant=tenant)


def bulk_activities(conversation, count):
    """Store ``count`` activities at once (fast setup for replay sizes); no notification."""
    start = conversation.watermark
    Activity.objects.bulk_create(
        Activity(
            conversation=conversation,
            sequence=sequence,
            data={"type": "message", "id": activity_id(conversation.id, sequence), "n": sequence},
        )
        for sequence in range(start + 1, start + count + 1)
    )
    conversation.watermark = start + count
    Conversation.objects.filter(pk=conversation.pk).update(watermark=conversation.watermark)


def token_for(conversation, user_id="user-1"):
    return issue_token(conversation.tenant_id, conversation.id, user_id)


def expired_token_for(conversation):
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "tid": str(conversation.tenant_id),
        "conv": conversation.id,
        "user": "user-1",
        "iat": now - 3600,
        "exp": now - 1800,
    }
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM)


def stream_path(conversation_id, token=None, watermark=None):
    query = []
    if watermark is not None:
        query.append(f"watermark={watermark}")
    if token is not None:
        query.append(f"t={token}")
    path = f"/v3/directline/conversations/{conversation_id}/stream"
    return path + ("?" + "&".join(query) if query else "")


def communicator(path, application=recording_application):
    return WebsocketCommunicator(application, path)


async def bump(conversation, watermark):
    """Send the notification the notifier would send for ``watermark`` (local only)."""
    event = NotifyEvent(str(conversation.tenant_id), conversation.id, watermark)
    await get_channel_layer().group_send(
        group_name(event.tenant_id, event.conversation_id), watermark_message(event)
    )


def group_members(conversation):
    """The channel names in the conversation's group (for layers that expose ``groups``)."""
    layer = get_channel_layer()
    groups = layer.groups
    return set(groups.get(group_name(str(conversation.tenant_id), conversation.id), ()))


def parse_activity_set(testcase, text):
    """Assert ``text`` is a valid ActivitySet frame; return (activities, watermark)."""
    frame = json.loads(text)
    testcase.assertEqual(set(frame), {"activities", "watermark"}, text[:200])
    testcase.assertIsInstance(frame["activities"], list)
    testcase.assertRegex(frame["watermark"], r"^[0-9]+$")
    return frame["activities"], int(frame["watermark"])


async def receive_set(testcase, comm, timeout=TIMEOUT):
    return parse_activity_set(testcase, await comm.receive_from(timeout))


async def receive_close(testcase, comm, timeout=TIMEOUT):
    """Wait for the server's close; return its code."""
    message = await comm.receive_output(timeout)
    testcase.assertEqual(message["type"], "websocket.close", message)
    return message.get("code")


async def assert_refused(testcase, comm, code):
    """The handshake completes only to carry ``code``; nothing else is sent."""
    connected, _ = await comm.connect(TIMEOUT)
    testcase.assertTrue(connected)
    testcase.assertEqual(await receive_close(testcase, comm), code)
    testcase.assertTrue(await comm.receive_nothing(0.05))
    await comm.disconnect(code=code, timeout=TIMEOUT)


async def append(conversation, text):
    """append_activity from async code, as a view would (the signal path included)."""
    return await sync_to_async(append_activity)(
        conversation, {"type": "message", "text": text, "from": {"id": "u", "role": "user"}}
    )
