"""The stream's per-replica socket counters (their limits: ``WEBCHAT_STREAM``, read through
:mod:`webchat.conf`)."""

from collections import Counter

from .conf import settings


class SocketSlots:
    """Counts the open stream sockets of this process by tenant, conversation, user and IP.

    Used from the event loop only: ``acquire`` checks and counts in one step without
    awaiting, so two sockets connecting at once cannot both take the last slot. The user
    and IP caps keep one visitor (many tokens from one address) from taking the tenant's
    sockets from its other users.
    """

    def __init__(self):
        self._tenants = Counter()
        self._conversations = Counter()
        self._users = Counter()
        self._ips = Counter()

    def _counters(self, tenant_id, conversation_id, user_id, ip):
        # Checked in this order: the narrowest scope names the refusal. A None user or IP
        # is not counted in that scope.
        counters = [
            (self._conversations, (tenant_id, conversation_id), "MAX_SOCKETS_PER_CONVERSATION")
        ]
        if user_id is not None:
            counters.append((self._users, (tenant_id, user_id), "MAX_SOCKETS_PER_USER"))
        if ip is not None:
            counters.append((self._ips, ip, "MAX_SOCKETS_PER_IP"))
        counters.append((self._tenants, tenant_id, "MAX_SOCKETS_PER_TENANT"))
        return counters

    def acquire(
        self, tenant_id: str, conversation_id: str, user_id: str | None = None, ip=None
    ) -> str | None:
        """Take a slot; return None, or the name of the limit that refuses it."""
        counters = self._counters(tenant_id, conversation_id, user_id, ip)
        for counter, key, name in counters:
            if counter[key] >= getattr(settings, name.lower()):
                return name
        for counter, key, _ in counters:
            counter[key] += 1
        return None

    def release(
        self, tenant_id: str, conversation_id: str, user_id: str | None = None, ip=None
    ) -> None:
        """Give back a slot taken by ``acquire`` (called once, when the socket goes away)."""
        for counter, key, _ in self._counters(tenant_id, conversation_id, user_id, ip):
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
