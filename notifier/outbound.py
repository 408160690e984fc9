"""The Redis notifier's outbound side: bounded queues of wire payloads, drained by one owner.

Publishers only append to a queue, so a slow or dead Redis never blocks them.
:class:`AsyncSender` drains it from a task on the consumers' loop, :class:`ThreadSender` from a
daemon thread for code with no such loop. A failed round trip's payloads are sent again
(newest per conversation); when some had to be given up, a resync request goes out. A
failed round trip is logged at WARNING (``redis_publish_dropped``, rate-limited:
:mod:`notifier.oplog`), and ``failing_since`` tells readiness how long every PUBLISH has
failed. docs/backplane.md explains the counters and the retry rules.
"""

import asyncio
import atexit
import os
import threading
import time
import weakref

from . import oplog, pipeline
from .backoff import Backoff
from .conf import mask_url
from .failures import explain
from .resync import control_channel
from .sendqueue import BATCH_SIZE, SendQueue, count_failed, count_sent
from .tasks import cancel_and_wait

_CLIENT_NAME = "webchat-notifier-publish"

#: Pause after a failed round trip (ms, ±20 %): short, because Redis usually comes back fast,
#: and capped low so notifications resume within a second of Redis answering again.
RETRY_SCHEDULE_MS = (100, 250, 500, 1000)

#: Longest an async publisher waits for room in the queue, and only while Redis answers.
MAX_PUBLISH_WAIT = 0.005

#: A round trip slower than this counts as Redis not answering: publishers stop waiting.
SLOW_ROUND_TRIP = 0.05


def _record_failure(sender, batch, error):
    # A failed round trip of either sender (the thread sender's under its lock): counted,
    # logged (rate-limited), and since when every PUBLISH fails (for readiness). A refused
    # password, TLS handshake or ACL permission is named as such (notifier.failures).
    error = explain(error, sender.transport.url, command="PUBLISH",
                    channels=(sender.channel, sender.control_channel))
    given_up = count_failed(sender.counters, sender._queue, batch)
    oplog.publish_dropped(sender._masked_url, retrying=len(sender._queue.retry),
                          given_up=given_up, error=error)
    sender.last_error = error
    if sender.failing_since is None:
        sender.failing_since = time.monotonic()


class AsyncSender:
    """Drains the queue from one task on one event loop; all methods run on that loop."""

    def __init__(self, transport, channel, *, capacity, counters, resync_request=None):
        self.transport = transport
        self._masked_url = mask_url(transport.url)
        self.channel = channel
        self.control_channel = control_channel(channel)
        self.counters = counters
        self._queue = SendQueue(capacity, resync_request)
        #: ``time.monotonic()`` of the first failed round trip since the last one that
        #: succeeded (None: the last one succeeded), and that failure's error.
        self.failing_since = None
        self.last_error = None
        # redis-py's asyncio client applies socket_timeout to each reply it reads, with a
        # timeout context per reply (see docs/benchmarks.md). So the client gets none, and
        # the whole round trip gets the transport's socket_timeout.
        self._round_trip_timeout = transport.socket_timeout
        # PUBLISHes are written in RESP directly (see notifier.pipeline): global, control.
        self._heads = (pipeline.command_head(channel), pipeline.command_head(self.control_channel))
        self.loop = None
        self._task = None
        self._wakeup = None
        self._space = None
        self._inflight = 0
        self._inflight_since = None
        self._high_water = max(1, min(BATCH_SIZE, capacity // 2))

    @property
    def running(self):
        return self._task is not None and not self._task.done()

    def start(self):
        """Called once by the notifier's ``astart()`` on the loop that will own the task."""
        self.loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._task = self.loop.create_task(self._run(), name="notifier-redis-sender")

    def put_nowait(self, item):
        """Queue one ``(key, payload)``; never blocks, never raises. Only call on :attr:`loop`.

        Returns whether the queue reached its high-water mark (a batch, or half the capacity):
        the async publisher should then ``await relieve()``.
        """
        if self._queue.push(item):
            self.counters.incr("mirror_dropped")
            oplog.publish_dropped(self._masked_url, given_up=1)
        self._wakeup.set()
        return len(self._queue.items) >= self._high_water

    async def relieve(self):
        """Called by an async publisher after ``put_nowait`` returned True.

        A publisher that never awaits anything else (a tight ``apublish`` loop) would starve
        this task, so it yields once. While Redis answers promptly it also waits, at most
        MAX_PUBLISH_WAIT, for the queue to drop below the high-water mark: backpressure
        instead of drops. While Redis fails or a round trip hangs, it does not wait.
        """
        await asyncio.sleep(0)
        if len(self._queue.items) < self._high_water or not self._healthy():
            return
        self._space.clear()
        try:
            async with asyncio.timeout(MAX_PUBLISH_WAIT):
                await self._space.wait()
        except TimeoutError:
            pass

    def _healthy(self):
        if self.failing_since is not None:
            return False
        since = self._inflight_since
        return since is None or self.loop.time() - since < SLOW_ROUND_TRIP

    async def _run(self):
        # redis-py retries a failed connect once; a batch whose connection fails is sent once
        # more, on a new connection, by notifier.pipeline.
        client = self.transport.client(_CLIENT_NAME, retries=1, socket_timeout=None)
        backoff = Backoff(RETRY_SCHEDULE_MS)
        try:
            while True:
                if not self._queue.items and not self._queue.retry:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                batch = self._queue.take()
                if len(self._queue.items) < self._high_water:
                    self._space.set()
                self._inflight = len(batch)
                self._inflight_since = self.loop.time()
                heads = self._heads
                commands = [(heads[key is None], payload) for key, payload in batch]
                try:
                    async with asyncio.timeout(self._round_trip_timeout):
                        await self.transport.publish(client, commands)
                except Exception as exc:
                    # CancelledError is no Exception: shutdown goes straight through.
                    _record_failure(self, batch, exc)
                    if isinstance(exc, TimeoutError):
                        # Cut off mid-round trip, replies may still be on their way: never
                        # reuse that connection. redis-py closes one cut off in a read, not
                        # one cut off in its handshake; this closes either.
                        await client.connection_pool.disconnect()
                    self._inflight, self._inflight_since = 0, None
                    await asyncio.sleep(backoff.next_delay())
                else:
                    count_sent(self.counters, batch)
                    self.failing_since = None
                    self._inflight, self._inflight_since = 0, None
                    backoff.reset()
        finally:
            await client.aclose()

    async def aclose(self, flush_timeout=1.0):
        """Called by the notifier's ``aclose()``: flush for up to ``flush_timeout`` s, then
        cancel the task and await it."""
        task, self._task = self._task, None
        if task is None:
            return
        deadline = self.loop.time() + flush_timeout
        while (len(self._queue) or self._inflight) and not task.done():
            if self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.005)
        await cancel_and_wait(task)
        unsent = self._queue.discard()
        if unsent:
            self.counters.incr("mirror_dropped", unsent)
            oplog.publish_dropped(self._masked_url, given_up=unsent)


class ThreadSender:
    """Drains the queue from one daemon thread with a synchronous client; thread-safe."""

    def __init__(self, transport, channel, *, capacity, counters, resync_request=None):
        self.transport = transport
        self._masked_url = mask_url(transport.url)
        self.channel = channel
        self.control_channel = control_channel(channel)
        self.counters = counters
        self._queue = SendQueue(capacity, resync_request)
        #: As :attr:`AsyncSender.failing_since` and ``last_error``.
        self.failing_since = None
        self.last_error = None
        self._cond = threading.Condition()
        self._thread = None
        self._closing = False
        self._inflight = 0

    def put_nowait(self, item):
        """Queue one ``(key, payload)`` from any thread; starts the thread on first use.
        Never blocks."""
        with self._cond:
            if self._closing:
                self.counters.incr("mirror_dropped")
                return
            if self._queue.push(item):
                self.counters.incr("mirror_dropped")
                oplog.publish_dropped(self._masked_url, given_up=1)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="notifier-redis-sender", daemon=True
                )
                self._thread.start()
                _live_thread_senders.add(self)
            self._cond.notify()

    def _run(self):
        # One immediate retry lets a pooled connection that Redis closed (restart, CLIENT KILL)
        # reconnect without losing the batch; more would only delay the next batch.
        client = self.transport.client(_CLIENT_NAME, asynchronous=False, retries=1)
        backoff = Backoff(RETRY_SCHEDULE_MS)
        try:
            while True:
                with self._cond:
                    while not len(self._queue) and not self._closing:
                        self._cond.wait()
                    if not len(self._queue):
                        return
                    batch = self._queue.take()
                    self._inflight = len(batch)
                try:
                    pipe = client.pipeline(transaction=False)
                    for key, payload in batch:
                        pipe.publish(self.channel if key is not None else self.control_channel,
                                     payload)
                    pipe.execute()
                except Exception as exc:
                    with self._cond:
                        _record_failure(self, batch, exc)
                        self._inflight = 0
                        if self._closing:
                            # Shutting down and Redis is away: give up on the rest.
                            unsent = self._queue.discard()
                            self.counters.incr("mirror_dropped", unsent)
                            oplog.publish_dropped(self._masked_url, given_up=unsent)
                            return
                        self._cond.wait(backoff.next_delay())
                else:
                    count_sent(self.counters, batch)
                    self.failing_since = None
                    backoff.reset()
                    with self._cond:
                        self._inflight = 0
                        self._cond.notify_all()
        finally:
            client.close()

    def flush(self, timeout=2.0):
        """Wait up to ``timeout`` s until everything queued so far was sent or failed."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not len(self._queue) and not self._inflight, timeout
            )

    def close(self, timeout=2.0):
        """Called by the notifier's ``close()``/``aclose()`` and at exit: send what is queued
        (for up to ``timeout`` s), then stop the thread."""
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        _live_thread_senders.discard(self)


# A management command that publishes and returns at once would otherwise exit before the
# daemon thread sent anything: give every live sender a bounded chance to flush at exit.
_live_thread_senders = weakref.WeakSet()
# A forked child has none of its parent's threads: nothing of theirs to flush.
os.register_at_fork(after_in_child=_live_thread_senders.clear)


@atexit.register
def _close_thread_senders_at_exit():
    for sender in list(_live_thread_senders):
        sender.close(timeout=2.0)
