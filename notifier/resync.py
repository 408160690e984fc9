"""Resync: tell every local consumer to re-read from its cursor, spread over up to a second.

Runs after each subscription of the listener (``connect``, ``reconnect``) and when a peer
announces that it lost notifications (``peer``). Consumers in notifier groups handle
``webchat.resync`` by re-reading once. docs/backplane.md says why and how.
"""

import asyncio
import logging
import random

from channels.layers import get_channel_layer

from . import oplog
from .events import GROUP_PREFIX
from .stats import Counters
from .tasks import cancel_and_wait

logger = logging.getLogger(__name__)

#: The ``type`` of the channel-layer message; consumers handle it in ``webchat_resync``.
MESSAGE_TYPE = "webchat.resync"

#: Reasons a resync runs (metric labels).
CONNECT = "connect"
RECONNECT = "reconnect"
PEER = "peer"
REASONS = (CONNECT, RECONNECT, PEER)

#: The longest a pass is spread over, in seconds.
MAX_SPREAD = 1.0
#: Groups visited per second when that takes less than MAX_SPREAD.
RATE = 1000.0
# Groups sent to together: the pass sleeps between slots of this length (seconds).
_SLOT = 0.01


def control_channel(channel):
    """The channel on which our replicas ask each other to resync (global ``channel``)."""
    return f"{channel}:resync"


def local_groups(layer):
    """The notifier groups of ``layer`` in this process, or None if it cannot list them."""
    groups = getattr(layer, "groups", None)
    if not isinstance(groups, dict):
        return None
    return [name for name in list(groups) if name.startswith(GROUP_PREFIX)]


class Resyncer:
    """Sends ``webchat.resync`` to every local notifier group, jittered; owns its task.

    ``layer``: the channel layer, or the alias of one (looked up at each pass). ``rand``:
    ``random.random`` (tests pass their own).
    """

    def __init__(self, layer, *, max_spread=MAX_SPREAD, rate=RATE, rand=random.random):
        if max_spread < 0 or rate <= 0:
            raise ValueError("max_spread must be >= 0 and rate > 0")
        self._layer = layer
        self.max_spread = max_spread
        self.rate = rate
        self._rand = rand
        self.counters = Counters(*REASONS, "groups", "unsupported", "failed_sends")
        #: The last pass: reason, groups, spread (s), and whether it finished.
        self.last = None
        self._task = None
        self._warned = False

    @property
    def layer(self):
        if isinstance(self._layer, str):
            return get_channel_layer(self._layer)
        return self._layer

    @property
    def running(self):
        return self._task is not None and not self._task.done()

    def request(self, reason):
        """Called on the loop (by the listener): start a pass, replacing one that runs."""
        self.counters.incr(reason)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self._task = asyncio.get_running_loop().create_task(
            self._pass(reason), name=f"notifier-resync:{reason}"
        )
        return self._task

    async def wait(self):
        """Wait for the pass in progress, if any (tests; shutdown uses :meth:`aclose`)."""
        while self._task is not None and not self._task.done():
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    raise

    def cancel(self):
        """Cancel the task without waiting (the owner awaits it with :meth:`aclose`)."""
        if self._task is not None:
            self._task.cancel()

    async def aclose(self):
        """Called by the owner (the listener) when it stops: cancel the pass and wait."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def schedule(self, groups):
        """Return ``[(offset in seconds, group), ...]`` sorted by offset: the plan of a pass."""
        spread = min(self.max_spread, len(groups) / self.rate)
        plan = [(self._rand() * spread, group) for group in groups]
        plan.sort(key=lambda item: item[0])
        return plan, spread

    async def _pass(self, reason):
        layer = self.layer
        groups = None if layer is None else local_groups(layer)
        if groups is None:
            self.counters.incr("unsupported")
            if not self._warned:
                self._warned = True
                logger.warning("cannot resync the consumers of %r: it does not list its groups; "
                               "notifications missed while the backplane was away are only "
                               "caught up by the next activity", layer)
            return
        plan, spread = self.schedule(groups)
        self.last = {"reason": reason, "groups": len(groups), "spread_s": spread, "done": False}
        if groups:
            # Peers may ask many times a second (a flood of requests): the log stays bounded.
            oplog.limited(logger, ("resync", reason), logging.INFO,
                          "backplane resync (%s): %d group(s) over %.0f ms", reason,
                          len(groups), spread * 1000)
        loop = asyncio.get_running_loop()
        start = loop.time()
        # The stamp lets consumers answer a whole pass with one batched check (webchat).
        message = {"type": MESSAGE_TYPE, "reason": reason, "requested_at": start}
        for offset, group in plan:
            delay = start + offset - loop.time()
            if delay > _SLOT:
                await asyncio.sleep(delay)
            try:
                await layer.group_send(group, dict(message))
            except Exception:
                self.counters.incr("failed_sends")
                oplog.limited(logger, "resync_send", logging.WARNING,
                              "resync group_send to %s failed", group, exc_info=True)
            self.counters.incr("groups")
        self.last["done"] = True

    def stats(self):
        """Counters by reason, groups visited, and the last pass (any thread)."""
        return {**self.counters.snapshot(), "running": self.running, "last": self.last}
