"""The bot's waiting room: activities queued per tenant and per conversation, served fairly.

Tenants take turns (round robin), and within a tenant its conversations take turns, so a
tenant posting as fast as it can delays another tenant by one bot call per turn, not by
its whole backlog. A conversation's activities are answered one at a time, in order.

Bounds: per conversation, per tenant and in all. When the whole queue is full, a newcomer
from a tenant with fewer waiting activities than the busiest tenant takes the place of the
busiest tenant's newest waiting activity, so a flood never shuts another tenant out.

Pure logic, no locking: :class:`webchat.bot.BotRunner` holds its lock around every call.
"""

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class QueueBounds:
    total: int = 1000
    per_tenant: int = 100
    per_conversation: int = 20


@dataclass(slots=True)
class _Conversation:
    items: deque = field(default_factory=deque)
    busy: bool = False  # its head is being answered

    def waiting(self) -> int:
        return len(self.items) - (1 if self.busy else 0)


@dataclass(slots=True)
class _Tenant:
    conversations: dict = field(default_factory=dict)
    ready: deque = field(default_factory=deque)  # conversations with a head to answer
    pending: int = 0  # waiting and being answered


@dataclass(frozen=True, slots=True)
class Pushed:
    """What ``push`` did: refused (the bound's name), and an activity it evicted, if any."""

    refused: str | None = None
    evicted: object = None


class FairQueue:
    def __init__(self):
        self._tenants: dict[str, _Tenant] = {}
        self._ring: deque = deque()  # tenants with a ready conversation, in turn order
        self.pending = 0  # waiting and being answered

    def push(self, tenant_id, conversation_id, item, bounds: QueueBounds) -> Pushed:
        """Queue ``item`` at the end of its conversation, unless a bound refuses it."""
        tenant = self._tenants.get(tenant_id)
        conversation = tenant.conversations.get(conversation_id) if tenant else None
        if conversation is not None and len(conversation.items) >= bounds.per_conversation:
            return Pushed(refused="per_conversation")
        if tenant is not None and tenant.pending >= bounds.per_tenant:
            return Pushed(refused="per_tenant")
        evicted = None
        if self.pending >= bounds.total:
            evicted = self._evict_from_busiest(tenant.pending if tenant else 0)
            if evicted is None:
                return Pushed(refused="total")
            tenant = self._tenants.get(tenant_id)
            conversation = tenant.conversations.get(conversation_id) if tenant else None
        if tenant is None:
            tenant = self._tenants[tenant_id] = _Tenant()
        if conversation is None:
            conversation = tenant.conversations[conversation_id] = _Conversation()
        conversation.items.append(item)
        tenant.pending += 1
        self.pending += 1
        if not conversation.busy and len(conversation.items) == 1:
            self._make_ready(tenant_id, tenant, conversation_id)
        return Pushed(evicted=evicted)

    def take(self):
        """The next ``(tenant_id, conversation_id, item)`` to answer, or None. The item stays
        queued (its conversation busy) until :meth:`done`."""
        if not self._ring:
            return None
        tenant_id = self._ring.popleft()
        tenant = self._tenants[tenant_id]
        conversation_id = tenant.ready.popleft()
        if tenant.ready:
            self._ring.append(tenant_id)
        conversation = tenant.conversations[conversation_id]
        conversation.busy = True
        return tenant_id, conversation_id, conversation.items[0]

    def done(self, tenant_id, conversation_id) -> None:
        """Called once the item from :meth:`take` is answered (or failed)."""
        tenant = self._tenants[tenant_id]
        conversation = tenant.conversations[conversation_id]
        conversation.items.popleft()
        conversation.busy = False
        self._count_out(tenant_id, tenant, 1)
        if conversation.items:
            self._make_ready(tenant_id, tenant, conversation_id)
        else:
            self._forget(tenant_id, tenant, conversation_id)

    def drop_waiting(self) -> int:
        """Drop every item not being answered; return how many."""
        dropped = 0
        for tenant_id, tenant in list(self._tenants.items()):
            for conversation_id, conversation in list(tenant.conversations.items()):
                keep = 1 if conversation.busy else 0
                count = len(conversation.items) - keep
                for _ in range(count):
                    conversation.items.pop()
                dropped += count
                self._count_out(tenant_id, tenant, count)
                if not conversation.items:
                    self._forget(tenant_id, tenant, conversation_id)
            tenant.ready.clear()
        self._ring.clear()
        return dropped

    def tenant_pending(self, tenant_id) -> int:
        tenant = self._tenants.get(tenant_id)
        return tenant.pending if tenant else 0

    # Internals

    def _make_ready(self, tenant_id, tenant, conversation_id):
        tenant.ready.append(conversation_id)
        if len(tenant.ready) == 1:
            self._ring.append(tenant_id)

    def _count_out(self, tenant_id, tenant, count):
        tenant.pending -= count
        self.pending -= count

    def _forget(self, tenant_id, tenant, conversation_id):
        del tenant.conversations[conversation_id]
        if not tenant.conversations:
            del self._tenants[tenant_id]

    def _evict_from_busiest(self, newcomer_pending: int):
        """Drop the newest waiting item of the tenant with the most pending, if that tenant
        has more than the newcomer's tenant would after the push; return it, or None."""
        busiest_id, busiest = None, None
        for tenant_id, tenant in self._tenants.items():
            if busiest is None or tenant.pending > busiest.pending:
                busiest_id, busiest = tenant_id, tenant
        if busiest is None or busiest.pending <= newcomer_pending + 1:
            return None
        conversation_id, conversation = max(
            busiest.conversations.items(), key=lambda pair: pair[1].waiting()
        )
        if conversation.waiting() == 0:
            return None
        item = conversation.items.pop()
        self._count_out(busiest_id, busiest, 1)
        if not conversation.items:
            # Not busy (it had a waiting item and now none): it was ready.
            busiest.ready.remove(conversation_id)
            if not busiest.ready:
                self._ring.remove(busiest_id)
            self._forget(busiest_id, busiest, conversation_id)
        return item
