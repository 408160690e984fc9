"""The stream's per-replica socket counters (their limits: ``WEBCHAT_STREAM``, read through
:mod:`webchat.conf`)."""

from collections import Counter

from .conf import settings


class SocketSlots:
    """Counts the open stream sockets of this process by tenant and by conversation.

    Used from the event loop only: ``acquire`` checks and counts in one step without
    awaiting, so two sockets connecting at once cannot both take the last slot.
    """

    def __init__(self):
        self._tenants = Counter()
        self._conversations = Counter()

    def acquire(self, tenant_id: str, conversation_id: str) -> str | None:
        """Take a slot; return None, or the name of the limit that refuses it."""
        conversation = (tenant_id, conversation_id)
        if self._conversations[conversation] >= settings.max_sockets_per_conversation:
            return "MAX_SOCKETS_PER_CONVERSATION"
        if self._tenants[tenant_id] >= settings.max_sockets_per_tenant:
            return "MAX_SOCKETS_PER_TENANT"
        self._conversations[conversation] += 1
        self._tenants[tenant_id] += 1
        return None

    def release(self, tenant_id: str, conversation_id: str) -> None:
        """Give back a slot taken by ``acquire`` (called once, when the socket goes away)."""
        conversation = (tenant_id, conversation_id)
        for counter, key in ((self._conversations, conversation), (self._tenants, tenant_id)):
            counter[key] -= 1
            if counter[key] <= 0:
                # Drop the key so the counters do not grow with every conversation ever seen.
                del counter[key]

    def tenant_count(self, tenant_id: str) -> int:
        return self._tenants.get(tenant_id, 0)

    def conversation_count(self, tenant_id: str, conversation_id: str) -> int:
        return self._conversations.get((tenant_id, conversation_id), 0)

    def tenant_counts(self) -> dict:
        """A copy of the open sockets by tenant (read by the metrics at scrape time)."""
        return dict(self._tenants)


#: The process's counters: the limits are per replica.
socket_slots = SocketSlots()
