"""Per-replica limits of the Direct Line stream: their settings and the socket counters.

Settings come from one optional dict, read on each connection (so ``override_settings``
works and nothing is read at import time)::

    WEBCHAT_STREAM = {
        "MAX_SOCKETS_PER_TENANT": 1000,        # open sockets of one tenant on this replica
        "MAX_SOCKETS_PER_CONVERSATION": 5,     # open sockets of one conversation on this replica
        "MAX_SOCKETS_PER_USER": 10,            # open sockets of one token user on this replica
        "MAX_SOCKETS_PER_IP": 100,             # open sockets from one client IP on this replica
        "IDLE_TIMEOUT": 300,                   # seconds without a client frame or a sent frame
        "MAX_REPLAY": 1000,                    # activities a connecting socket may have missed
        "MAX_FRAME_BYTES": 1024 * 1024,        # largest client frame (UTF-8 bytes) accepted
    }

The defaults are the reference service's. daphne enforces the frame limit itself before
the application sees the frame (``--websocket-max-message-size``, 1 MiB by default, closing
with 1009); keep both at the same value.
"""

from collections import Counter
from dataclasses import dataclass, fields

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True, slots=True)
class StreamLimits:
    MAX_SOCKETS_PER_TENANT: int = 1000
    MAX_SOCKETS_PER_CONVERSATION: int = 5
    MAX_SOCKETS_PER_USER: int = 10
    MAX_SOCKETS_PER_IP: int = 100
    IDLE_TIMEOUT: float = 300.0
    MAX_REPLAY: int = 1000
    MAX_FRAME_BYTES: int = 1024 * 1024


_NAMES = {field.name for field in fields(StreamLimits)}


def stream_limits() -> StreamLimits:
    """Return the limits from ``settings.WEBCHAT_STREAM`` over the defaults.

    Called once per connecting socket. Unknown keys and non-positive values raise
    ImproperlyConfigured naming the key, rather than being silently ignored.
    """
    configured = getattr(settings, "WEBCHAT_STREAM", None) or {}
    if not isinstance(configured, dict):
        raise ImproperlyConfigured("WEBCHAT_STREAM must be a dict, e.g. {'IDLE_TIMEOUT': 300}.")
    unknown = set(configured) - _NAMES
    if unknown:
        raise ImproperlyConfigured(
            f"WEBCHAT_STREAM has unknown key(s) {sorted(unknown)}; known: {sorted(_NAMES)}."
        )
    for key, value in configured.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ImproperlyConfigured(
                f"WEBCHAT_STREAM[{key!r}] must be a positive number, not {value!r}."
            )
    return StreamLimits(**configured)


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
        self,
        tenant_id: str,
        conversation_id: str,
        limits: StreamLimits,
        user_id: str | None = None,
        ip: str | None = None,
    ) -> str | None:
        """Take a slot; return None, or the name of the limit that refuses it."""
        counters = self._counters(tenant_id, conversation_id, user_id, ip)
        for counter, key, name in counters:
            if counter[key] >= getattr(limits, name):
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
