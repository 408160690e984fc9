"""``POST /conversations`` dedup, shared by every replica through the database.

Clients (the seed's Web Chat page among them) sometimes start twice within a moment: a
React effect racing a connection-status listener. The seed answers the second start with
the first one's conversation when the body names the same ``user.id`` within 30 s
(greentic-start ``conv_dedup.rs``), in one process's memory. Here the claim is a row of
:class:`~webchat.models.ConversationStart`, unique per (tenant, user): whichever replica
inserts it first wins, and the other uses the winner's conversation.
"""

import hashlib
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Conversation, ConversationStart


def user_key(user_id: str) -> str:
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def start_conversation(tenant_id, user_id: str, window: float) -> Conversation:
    """Return the conversation ``user_id`` started within ``window`` seconds, or a new one
    (called by ``POST /conversations`` with the tenant secret and a ``user.id``)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=window)
    key = user_key(user_id)
    recent = _recent(tenant_id, key, cutoff)
    if recent is not None:
        return recent
    # Claims older than the window are dead: drop them (this user's, and everyone's, so the
    # table holds only the last window's starts), then claim with a new conversation.
    ConversationStart.objects.filter(created__lt=cutoff).delete()
    try:
        with transaction.atomic():
            conversation = Conversation.objects.create(tenant_id=tenant_id)
            ConversationStart.objects.create(
                tenant_id=tenant_id, user_key=key, conversation=conversation, created=now
            )
            return conversation
    except IntegrityError:
        # Another request (on this replica or another) claimed it first: ours is rolled back.
        recent = _recent(tenant_id, key, cutoff)
        if recent is None:
            raise
        return recent


def _recent(tenant_id, key: str, cutoff) -> Conversation | None:
    start = (
        ConversationStart.objects.select_related("conversation")
        .filter(tenant_id=tenant_id, user_key=key, created__gte=cutoff)
        .first()
    )
    return None if start is None else start.conversation
