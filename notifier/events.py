"""The notification itself, its Channels group, and the message consumers receive."""

import hashlib
from dataclasses import dataclass

from .memo import BoundedCache

#: The ``type`` of the channel-layer message; consumers handle it in ``webchat_watermark``.
MESSAGE_TYPE = "webchat.watermark"

GROUP_PREFIX = "webchat.wm."


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """A topic changed: ``(namespace, key)`` is now at ``version``; re-read the database.

    The wire calls them ``tenant_id``, ``conversation_id`` and ``new_watermark`` (webchat's
    words); ``namespace``, ``key`` and ``version`` are the same fields.
    """

    tenant_id: str
    conversation_id: str
    new_watermark: int

    @property
    def namespace(self) -> str:
        return self.tenant_id

    @property
    def key(self) -> str:
        return self.conversation_id

    @property
    def version(self) -> int:
        return self.new_watermark


#: The public name of :class:`NotifyEvent`: ``Change(namespace, key, version)``.
Change = NotifyEvent


# The frozen dataclass's __init__ sets each field through object.__setattr__; the listener
# builds one event per message, so it writes the slots directly: the same object, built faster
# (docs/benchmarks.md).
_SET_TENANT, _SET_CONVERSATION, _SET_WATERMARK = (
    NotifyEvent.__dict__[name].__set__ for name in ("tenant_id", "conversation_id", "new_watermark")
)


def new_event(tenant_id, conversation_id, new_watermark):
    """``NotifyEvent(tenant_id, conversation_id, new_watermark)`` for values already checked
    (the listener's decoded messages): the same frozen object, built without ``__init__``."""
    event = object.__new__(NotifyEvent)
    _SET_TENANT(event, tenant_id)
    _SET_CONVERSATION(event, conversation_id)
    _SET_WATERMARK(event, new_watermark)
    return event


# Ids up to this many characters (together) have their group names cached: long ids cannot
# make the cache big.
_CACHED_ID_CHARS = 256


def group_name(tenant_id: str, conversation_id: str) -> str:
    """Return the Channels group of one conversation.

    Channels allows only ``[a-zA-Z0-9_.-]`` and fewer than 100 characters, while ids may be
    any text. Hashing a length-prefixed encoding of both ids keeps the map injective (the
    prefix stops ``("a|", "b")`` and ``("a", "|b")`` from meeting) for ids of any size.
    """
    if len(tenant_id) + len(conversation_id) <= _CACHED_ID_CHARS:
        return _GROUP_NAMES[tenant_id, conversation_id]
    return _group_name((tenant_id, conversation_id))


def _group_name(ids):
    tenant_id, conversation_id = ids
    tenant = tenant_id.encode("utf-8", "surrogatepass")
    conversation = conversation_id.encode("utf-8", "surrogatepass")
    return GROUP_PREFIX + hashlib.sha256(
        b"%d:%s%s" % (len(tenant), tenant, conversation)
    ).hexdigest()


# Every publish and every delivered message needs the group of its conversation, and a
# SHA-256 costs more than a lookup (docs/benchmarks.md): remember recent conversations'.
_GROUP_NAMES = BoundedCache(_group_name, 16384)


def watermark_message(event: NotifyEvent) -> dict:
    """Return the channel-layer message that tells a conversation's consumers to re-read."""
    return {
        "type": MESSAGE_TYPE,
        "tenant_id": event.tenant_id,
        "conversation_id": event.conversation_id,
        "watermark": event.new_watermark,
    }
