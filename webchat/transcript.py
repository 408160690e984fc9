"""Writing and reading a conversation's activities: the only place that moves a watermark."""

from datetime import UTC, datetime

from django.db import transaction
from django.db.models import F

from notifier.signals import watermark_bumped

from .models import Activity, Conversation


def activity_id(conversation_id: str, sequence: int) -> str:
    return f"{conversation_id}|{sequence:07d}"


def utc_timestamp() -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, as Direct Line clients expect."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append_activity(conversation: Conversation, activity: dict, using=None) -> dict:
    """Store ``activity`` as the conversation's next one and return it as stored.

    In one transaction: lock the conversation row (SELECT ... FOR UPDATE on PostgreSQL; on
    SQLite the IMMEDIATE transaction already holds the write lock), take the next sequence
    number, store the row, bump the watermark and send ``watermark_bumped``, whose receiver
    publishes after commit. Two replicas writing at once get gap-free, unique numbers.
    The caller fills ``from``, ``type`` etc.; this sets ``id``, ``timestamp``, ``channelId``
    and ``conversation``.
    """
    with transaction.atomic(using=using):
        locked = (
            Conversation.objects.using(using)
            .select_for_update()
            .only("id", "tenant_id", "watermark")
            .get(pk=conversation.pk)
        )
        sequence = locked.watermark + 1
        stored = dict(activity)
        stored["id"] = activity_id(locked.id, sequence)
        stored["timestamp"] = utc_timestamp()
        stored["channelId"] = "directline"
        stored["conversation"] = {"id": locked.id}
        Activity.objects.using(using).create(conversation=locked, sequence=sequence, data=stored)
        Conversation.objects.using(using).filter(pk=locked.pk).update(watermark=F("watermark") + 1)
        watermark_bumped.send(
            sender=Conversation,
            tenant_id=str(locked.tenant_id),
            conversation_id=locked.id,
            new_watermark=sequence,
            using=using,
        )
    conversation.watermark = sequence
    return stored


def activities_since(conversation_id: str, watermark: int, limit: int | None = None):
    """Return ``(activities, newest_sequence)`` after ``watermark``, oldest first."""
    rows = Activity.objects.filter(conversation_id=conversation_id, sequence__gt=watermark)
    rows = rows.order_by("sequence").values_list("sequence", "data")
    if limit is not None:
        rows = rows[:limit]
    rows = list(rows)
    newest = rows[-1][0] if rows else watermark
    return [data for _, data in rows], newest
