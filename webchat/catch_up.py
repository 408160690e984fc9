"""Catch-up without a notification: one batched watermark check for every local socket.

A notification is only a hint, and two kinds of hint can go missing:

* a replica SIGKILLed between committing an activity and PUBLISHing its bump: no replica
  ever hears of it (README "Delivery guarantees");
* a backplane that was away (its listener resubscribed, or a peer asked for a resync):
  whatever was published meanwhile.

Both are caught up by a *sweep*: the conversations that have stream sockets in this process,
their watermarks read in one query (:func:`webchat.queries.watermarks`), and, for each
conversation where a socket's cursor is behind, the ``webchat.watermark`` group send the
backplane's own local delivery makes (``notifier``'s ``local_send``). The consumer's
"notified, then read from the cursor" path does the rest, so a sweep can neither repeat nor
reorder anything; a conversation that did not move costs no read.

A sweep runs every ``WEBCHAT_STREAM["CATCH_UP_INTERVAL"]`` seconds (anti-entropy), and at once
when a consumer receives a ``webchat.resync``. A resync pass (``notifier.resync``) stamps its
messages with the loop time it began: every message of a pass that a sweep started after
already covers is dropped, so a pass over thousands of groups costs one sweep, not one read
per socket. A message without a stamp counts as sent when it arrived.

Ownership: the process's :data:`catch_up` starts its task on the loop of the first socket
that registers, and the socket that leaves last cancels and awaits it
(:func:`notifier.tasks.cancel_and_wait`): sockets are what it sweeps, so it lives exactly as
long as there is one, and a server's shutdown (which ends every socket) ends it.
"""

import asyncio
import contextlib
import logging
import time

from notifier.events import NotifyEvent
from notifier.runtime import get_notifier
from notifier.stats import Counters

from .conf import settings
from .queries import WATERMARK_CHUNK as CHUNK  # noqa: F401 (the chunk size, for tests)
from .queries import watermarks
from .stream_reads import stream_db

logger = logging.getLogger(__name__)

#: Seconds sweeps may fail in a row before readiness is red (see CatchUp.status).
FAILING_AFTER = 5.0

#: Seconds a sweep asked for by a resync waits for the other sockets of the pass to ask too
#: (resync messages without a stamp).
COLLECT = 0.01


class CatchUp:
    """The stream sockets of this process by conversation, and the task that sweeps them.

    A socket is anything with ``tenant_id``, ``conversation_id`` and ``behind(watermark)``
    (``webchat.consumers.StreamConsumer``). ``interval``: seconds between sweeps (a callable
    read at each sweep; default the setting).
    """

    def __init__(self, interval=None):
        self._interval = interval
        self._sockets = {}  # (tenant id, conversation id) -> set of sockets
        self._loop = None
        self._task = None
        self._wake = None
        self._covered = float("-inf")  # loop time the last sweep's query was asked for
        self.counters = Counters("sweeps", "requests", "covered", "woken", "failed")
        #: The last sweep: conversations, woken, seconds (wall clock, query included).
        self.last = None
        #: Sweeps failed in a row, since when (``time.monotonic()``), and the last error.
        self.failures = 0
        self.failing_since = None
        self.last_error = None

    @property
    def interval(self):
        return settings.catch_up_interval if self._interval is None else self._interval()

    def __len__(self):
        return sum(len(sockets) for sockets in self._sockets.values())

    def add(self, socket):
        """Called on the loop when a socket has joined its conversation's group."""
        key = (socket.tenant_id, socket.conversation_id)
        self._sockets.setdefault(key, set()).add(socket)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (tests): the old one took its task along
            self._loop, self._task, self._covered = loop, None, float("-inf")
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="webchat-catch-up")

    def discard(self, socket):
        """Called when a socket goes away. Returns the task the caller must cancel and await
        (:func:`notifier.tasks.cancel_and_wait`) when it was the last socket, else None."""
        key = (socket.tenant_id, socket.conversation_id)
        sockets = self._sockets.get(key)
        if sockets is None:
            return None
        sockets.discard(socket)
        if not sockets:
            del self._sockets[key]
        if self._sockets:
            return None
        # Nobody left to serve stale: a failing sweep no longer matters.
        self.failures, self.failing_since, self.last_error = 0, None, None
        task, self._task = self._task, None
        return task

    def request(self, requested_at=None):
        """Called on the loop for each ``webchat.resync``: sweep soon, unless a sweep that
        started after ``requested_at`` (loop time; None: now) already covers it."""
        self.counters.incr("requests")
        if self._wake is None or self._loop is not asyncio.get_running_loop():
            return
        if isinstance(requested_at, bool) or not isinstance(requested_at, int | float):
            requested_at = self._loop.time()
        if requested_at <= self._covered:
            self.counters.incr("covered")
            return
        self._wake.set()

    async def _run(self):
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await self._wake.wait()
                await asyncio.sleep(COLLECT)
            self._wake.clear()
            self._covered = loop.time()
            due = self._covered + self.interval
            try:
                await self.sweep()
            except Exception as exc:
                # The next sweep, one interval later, covers every socket again (the resyncs
                # this one was to answer included); the sockets keep their cursors. Failing
                # on, this replica is worse off than its peers: readiness says so (status()).
                self.counters.incr("failed")
                self.failures += 1
                self.last_error = exc
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                # The traceback once per run of failures: a bug shows where it is.
                logger.warning("stream catch-up sweep failed (%d in a row); retrying in %.1f s",
                               self.failures, self.interval, exc_info=self.failures == 1)
            else:
                self.failures, self.failing_since, self.last_error = 0, None, None

    async def sweep(self):
        """Read the watermarks of every conversation with local sockets; wake the sockets
        that are behind. Returns how many conversations were woken."""
        started = time.perf_counter()
        registered = list(self._sockets.items())
        found = await stream_db(watermarks, [key[1] for key, _ in registered])
        notifier, woken = get_notifier(), 0
        for (tenant_id, conversation_id), sockets in registered:
            row = found.get(conversation_id)
            if row is None or row[0] != tenant_id:
                continue
            for socket in sockets:
                if socket.behind(row[1]):
                    await notifier.local_send(NotifyEvent(tenant_id, conversation_id, row[1]))
                    woken += 1
                    break
        self.counters.incr("sweeps")
        self.counters.incr("woken", woken)
        self.last = {"conversations": len(registered), "woken": woken,
                     "seconds": time.perf_counter() - started}
        return woken

    def status(self, failing_after=FAILING_AFTER):
        """For ``/readyz``: ``{"ok": False, "reason": ...}`` once sweeps have failed for
        ``failing_after`` seconds and at least twice in a row (one failure is a blip the
        next sweep repairs), else ``{"ok": True, ...}``."""
        since, error = self.failing_since, self.last_error
        if since is not None and self.failures >= 2 and time.monotonic() - since >= failing_after:
            return {"ok": False, "failures": self.failures,
                    "reason": f"every catch-up sweep has failed for "
                              f"{time.monotonic() - since:.1f} s ({self.failures} in a row; "
                              f"last: {type(error).__name__}: {error})"}
        return {"ok": True, "sockets": len(self), "failures": self.failures}

    def stats(self):
        return {**self.counters.snapshot(), "sockets": len(self), "last": self.last}


#: The process's catch-up (one event loop serves the consumers).
catch_up = CatchUp()
