"""The notification itself, its Channels group, and the message consumers receive."""

import hashlib
from dataclasses import dataclass

#: The ``type`` of the channel-layer message; consumers handle it in ``webchat_watermark``.
MESSAGE_TYPE = "webchat.watermark"

GROUP_PREFIX = "webchat.wm."


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """A conversation's watermark moved to ``new_watermark``: re-read the database."""

    tenant_id: str
    conversation_id: str
    new_watermark: int


def group_name(tenant_id: str, conversation_id: str) -> str:
    """Return the Channels group of one conversation.

    Channels allows only ``[a-zA-Z0-9_.-]`` and fewer than 100 characters, while ids may be
    any text. Hashing a length-prefixed encoding of both ids keeps the map injective (the
    prefix stops ``("a|", "b")`` and ``("a", "|b")`` from meeting) for ids of any size.
    """
    tenant = tenant_id.encode("utf-8", "surrogatepass")
    conversation = conversation_id.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(b"%d:%s%s" % (len(tenant), tenant, conversation)).hexdigest()
    return GROUP_PREFIX + digest


def watermark_message(event: NotifyEvent) -> dict:
    """Return the channel-layer message that tells a conversation's consumers to re-read."""
    return {
        "type": MESSAGE_TYPE,
        "tenant_id": event.tenant_id,
        "conversation_id": event.conversation_id,
        "watermark": event.new_watermark,
    }
