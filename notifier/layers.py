"""A process-local channel layer whose group send costs O(members of that group).

The contract of channels' ``InMemoryChannelLayer`` (capacity, expiry, ``ChannelFull``,
groups, flush) with bookkeeping that never scans every channel. docs/backplane.md says how.
"""

import asyncio
import logging
import secrets
import time
from collections import deque

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from .layer_channels import ChannelState, check_message, copier, hand_over
from .memo import BoundedCache

logger = logging.getLogger(__name__)

# Channel names already validated, with their capacity: a consumer's state comes and goes
# with every message handed over, and re-running the name regex each time would double the
# cost of a receive. Group names likewise.
_NAME_CACHE_SIZE = 65536

# Deques of bookkeeping entries are rebuilt without their dead entries once dead ones
# outnumber live ones by this much: amortised O(1) per entry, memory O(live entries).
_COMPACT_SLACK = 1024


class LocalChannelLayer(BaseChannelLayer):
    """The process-local channel layer: O(members) group send, bounded queues, lazy expiry.

    Options (``CHANNEL_LAYERS[...]["CONFIG"]``): ``expiry`` seconds a queued message lives
    (60), ``group_expiry`` seconds a membership lives (86400), ``capacity`` messages a channel
    queues (100), ``channel_capacity`` per-channel overrides ({glob or regex: capacity}).
    """

    extensions = ["groups", "flush"]

    if not hasattr(BaseChannelLayer, "require_valid_channel_name"):
        # channels < 4.2 has the same public checks under their first names.
        require_valid_channel_name = BaseChannelLayer.valid_channel_name
        require_valid_group_name = BaseChannelLayer.valid_group_name

    def __init__(
        self, expiry=60, group_expiry=86400, capacity=100, channel_capacity=None, **kwargs
    ):
        super().__init__(expiry=expiry, capacity=capacity, **kwargs)
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.group_expiry = group_expiry
        #: channel name -> ChannelState, for channels with queued messages or a waiting receiver,
        #: and group members that have had one.
        self.channels = {}
        #: group name -> {channel name: monotonic time it joined}.
        self.groups = {}
        self._memberships = {}  # channel name -> set of its groups
        self._members = 0
        self._expiries = deque()  # queue entries in send order
        self._queued = 0
        self._joins = deque()  # (joined_at, group, channel) in join order
        self._dropped_full = 0
        self._expired = 0
        # See _NAME_CACHE_SIZE; the group check is for group_send to groups with no members.
        self._capacities = BoundedCache(self._checked_capacity, _NAME_CACHE_SIZE)
        self._valid_groups = BoundedCache(self.require_valid_group_name, _NAME_CACHE_SIZE)

    # Channel layer API

    async def send(self, channel, message):
        """Send ``message`` to ``channel``; raise ``ChannelFull`` if its queue is full."""
        check_message(message)
        copy = copier(message)
        state = self._channel(channel)
        if not self._deliver(state, channel, copy(message), time.monotonic()):
            if not state.queue and not state.waiters:
                del self.channels[channel]
            raise ChannelFull(channel)

    async def receive(self, channel):
        """Return the next message on ``channel``, waiting for one if need be.

        Called in a loop by each consumer. Cancelling a waiting receive loses no message.
        """
        # Every consumer calls this once per message it gets: the helpers are inlined.
        now = time.monotonic()
        expiries, joins = self._expiries, self._joins
        if (expiries and expiries[0][0] <= now) or (
            joins and joins[0][0] <= now - self.group_expiry
        ):
            self._expire(now)
        channels = self.channels
        state = channels.get(channel)
        if state is None:
            state = channels[channel] = self._new_state(channel)
        queue, waiters = state.queue, state.waiters
        if queue:
            entry = queue.popleft()
            message, entry[2] = entry[2], None
            self._queued -= 1
            if not queue and not waiters and not state.member:
                del channels[channel]
            return message
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a message, then cancelled before running: give it to the next one.
                self._requeue(channel, waiter.result())
            raise
        finally:
            # Still queued only if no message reached it (a sender pops the waiter it serves).
            if waiters and waiter in waiters:
                waiters.remove(waiter)
            # state.queue again: a message given back meanwhile (_requeue) may have made one.
            if (not waiters and not state.member and not state.queue
                    and channels.get(channel) is state):
                del channels[channel]

    async def new_channel(self, prefix="specific."):
        """Return a fresh process-local channel name; called once per consumer instance."""
        while True:
            name = f"{prefix}.local!{secrets.token_hex(8)}"
            if name not in self.channels and name not in self._memberships:
                return name

    # Groups extension

    async def group_add(self, group, channel):
        """Add ``channel`` to ``group`` (again: renews its membership)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        now = time.monotonic()
        members = self.groups.setdefault(group, {})
        if channel not in members:
            self._members += 1
            self._memberships.setdefault(channel, set()).add(group)
            state = self.channels.get(channel)
            if state is not None:
                state.member = True
        members[channel] = now
        self._joins.append((now, group, channel))
        if len(self._joins) > 2 * self._members + _COMPACT_SLACK:
            groups = self.groups
            self._joins = deque(
                join for join in self._joins if groups.get(join[1], {}).get(join[2]) == join[0]
            )

    async def group_discard(self, group, channel):
        """Remove ``channel`` from ``group``; called when a consumer leaves it or goes away."""
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        self._leave(group, channel)

    async def group_send(self, group, message):
        """Send ``message`` to every member of ``group``; full members skip it (counted)."""
        self.group_send_nowait(group, message)

    def group_send_nowait(self, group, message):
        """:meth:`group_send` without the coroutine: this layer's group send never waits.

        For callers on the layer's loop that send many messages in a row (the backplane
        listener); everything else should await :meth:`group_send`.
        """
        check_message(message)
        members = self.groups.get(group)
        if members is None:
            # The common case in a process without consumers (a publisher): still refuse a bad
            # name, as channels' layers do, but run the regex once per name.
            self._valid_groups[group]  # raises for a bad name; the regex runs once per name
            return
        copy = copier(message)
        now = time.monotonic()
        expiries, joins = self._expiries, self._joins
        if (expiries and expiries[0][0] <= now) or (
            joins and joins[0][0] <= now - self.group_expiry
        ):
            self._expire(now)
            members = self.groups.get(group, ())
        channels = self.channels
        # Delivering only resolves futures (their callbacks run later): no member can come or
        # go while this loop runs, so the dict needs no copy.
        for name in members:
            state = channels.get(name)
            if state is None:
                state = channels[name] = self._new_state(name)
            # A receiver waiting (the usual case) gets the message at once: _deliver inlined.
            waiters = state.waiters
            while waiters:
                waiter = waiters.pop(0)
                if not waiter.done():
                    waiter.set_result(copy(message))
                    break
            else:
                if not self._deliver(state, name, copy(message), now):
                    self._dropped_full += 1
                    logger.debug("group %s: channel %s is full, message dropped", group, name)

    # Flush extension

    async def flush(self):
        """Drop every queued message and group; receivers already waiting keep waiting."""
        for name, state in list(self.channels.items()):
            if state.queue:
                for entry in state.queue:
                    entry[2] = None
                state.queue.clear()
            state.member = False  # every group goes
            self._forget_if_idle(name, state)
        self.groups = {}
        self._memberships = {}
        self._members = 0
        self._expiries = deque()
        self._queued = 0
        self._joins = deque()

    async def close(self):
        """Nothing to release: the layer holds no connections."""

    def stats(self):
        """Return counts for monitoring and tests (cheap: no scans)."""
        return {
            "channels": len(self.channels),
            "groups": len(self.groups),
            "memberships": self._members,
            "queued": self._queued,
            "dropped_full": self._dropped_full,
            "expired": self._expired,
        }

    # Internals

    def _channel(self, name):
        state = self.channels.get(name)
        if state is None:
            state = self.channels[name] = self._new_state(name)
        return state

    def _new_state(self, name):
        return ChannelState(self._capacities[name], name in self._memberships)

    def _checked_capacity(self, name):
        """Validate the channel ``name`` (raises ``TypeError``) and return its capacity."""
        self.require_valid_channel_name(name)
        return self.get_capacity(name)

    def _deliver(self, state, name, message, now):
        if hand_over(state.waiters, message):
            return True
        queue = state.queue
        if queue is None:
            queue = state.queue = deque()
        elif len(queue) >= state.capacity:
            return False
        entry = [now + self.expiry, name, message]
        queue.append(entry)
        self._queued += 1
        expiries = self._expiries
        expiries.append(entry)
        if len(expiries) > 2 * self._queued + _COMPACT_SLACK:
            self._expiries = deque(entry for entry in expiries if entry[2] is not None)
        return True

    def _requeue(self, name, message):
        # To another receiver already waiting on the channel, else back at the queue's head.
        state = self._channel(name)
        if hand_over(state.waiters, message):
            return
        now = time.monotonic()
        entry = [now + self.expiry, name, message]
        if state.queue is None:
            state.queue = deque()
        state.queue.appendleft(entry)
        self._queued += 1
        self._expiries.append(entry)

    def _forget_if_idle(self, name, state):
        if (not state.queue and not state.waiters and not state.member
                and self.channels.get(name) is state):
            del self.channels[name]

    def _expire(self, now):
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            entry = expiries.popleft()
            if entry[2] is None:
                continue  # received already
            name = entry[1]
            state = self.channels[name]
            if state.queue[0] is entry:
                state.queue.popleft()
            else:  # behind a requeued message
                state.queue.remove(entry)
            entry[2] = None
            self._queued -= 1
            self._expired += 1
            for group in list(self._memberships.get(name, ())):
                self._leave(group, name)
            self._forget_if_idle(name, state)
        joins = self._joins
        oldest = now - self.group_expiry
        while joins and joins[0][0] <= oldest:
            joined_at, group, name = joins.popleft()
            if self.groups.get(group, {}).get(name) == joined_at:
                self._leave(group, name)

    def _leave(self, group, channel):
        members = self.groups.get(group)
        if members is None or channel not in members:
            return
        del members[channel]
        if not members:
            del self.groups[group]
        self._members -= 1
        groups = self._memberships[channel]
        groups.discard(group)
        if not groups:
            del self._memberships[channel]
            state = self.channels.get(channel)
            if state is not None:
                state.member = False
                self._forget_if_idle(channel, state)
