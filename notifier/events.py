"""The notification itself, its Channels group, and the message consumers receive."""

import hashlib
from dataclasses import dataclass

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
# builds one event per message, so it writes the slots directly: the same object, 3x faster.
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


# Every publish and every delivered message needs the group of its conversation, and a
# SHA-256 is most of a microsecond: remember the names of recent conversations. Bounded (cleared
# when full, a few MB at most) and only for ids of ordinary length, so that 1 KB ids cannot
# make it big.
_GROUPS: dict[tuple[str, str], str] = {}
_GROUPS_MAX = 16384
_GROUPS_MAX_ID_CHARS = 256


def group_name(tenant_id: str, conversation_id: str) -> str:
    """Return the Channels group of one conversation.

    Channels allows only ``[a-zA-Z0-9_.-]`` and fewer than 100 characters, while ids may be
    any text. Hashing a length-prefixed encoding of both ids keeps the map injective (the
    prefix stops ``("a|", "b")`` and ``("a", "|b")`` from meeting) for ids of any size.
    """
    key = (tenant_id, conversation_id)
    name = _GROUPS.get(key)
    if name is None:
        tenant = tenant_id.encode("utf-8", "surrogatepass")
        conversation = conversation_id.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(b"%d:%s%s" % (len(tenant), tenant, conversation)).hexdigest()
        name = GROUP_PREFIX + digest
        if len(tenant_id) + len(conversation_id) <= _GROUPS_MAX_ID_CHARS:
            if len(_GROUPS) >= _GROUPS_MAX:
                _GROUPS.clear()
            _GROUPS[key] = name
    return name


def watermark_message(event: NotifyEvent) -> dict:
    """Return the channel-layer message that tells a conversation's consumers to re-read."""
    return {
        "type": MESSAGE_TYPE,
        "tenant_id": event.tenant_id,
        "conversation_id": event.conversation_id,
        "watermark": event.new_watermark,
    }
