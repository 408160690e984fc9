"""Writing a conversation's activities: the only place that moves a watermark (pages of them
are read by ``webchat.pages``)."""

from datetime import UTC, datetime

from django.db import transaction

from notifier.signals import watermark_bumped

from . import queries
from .models import Conversation
from .pages import encode
from .sqlite_gate import write_gate


def activity_id(conversation_id: str, sequence: int) -> str:
    return f"{conversation_id}|{sequence:07d}"


def utc_timestamp() -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, as Direct Line clients expect."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append_activity(conversation: Conversation, activity: dict, using=None) -> dict:
    """Store ``activity`` as the conversation's next one and return it as stored.

    In one transaction: bump the conversation's watermark, which locks its row (on SQLite
    the IMMEDIATE transaction already holds the write lock) and gives the next sequence
    number, store the row and send ``watermark_bumped``, whose receiver publishes after
    commit. Two replicas writing at once get gap-free, unique numbers.
    The caller fills ``from``, ``type`` etc.; this sets ``id``, ``timestamp``, ``channelId``
    and ``conversation``. Raises ``Conversation.DoesNotExist`` if it is gone.
    """
    with write_gate.hold(using), transaction.atomic(using=using):
        bumped = queries.bump_watermark(conversation.pk, using)
        if bumped is None:
            raise Conversation.DoesNotExist(f"Conversation {conversation.pk!r} does not exist.")
        conversation_id, tenant_id, sequence = bumped
        stored = dict(activity)
        stored["id"] = activity_id(conversation_id, sequence)
        stored["timestamp"] = utc_timestamp()
        stored["channelId"] = "directline"
        stored["conversation"] = {"id": conversation_id}
        queries.insert_activity(conversation_id, sequence, stored, len(encode(stored)), using)
        watermark_bumped.send(
            sender=Conversation,
            tenant_id=str(tenant_id),
            conversation_id=conversation_id,
            new_watermark=sequence,
            using=using,
        )
    conversation.watermark = sequence
    return stored
