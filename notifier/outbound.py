"""The Redis notifier's outbound side: bounded queues of wire payloads, drained by one owner.

Publishers only append to a queue (microseconds, never a Redis round trip), so a slow or dead
Redis never blocks them. (An async publisher in a loop that never awaits anything else is
asked to yield, and while Redis answers promptly to wait up to 5 ms for room: backpressure
instead of drops. See :meth:`AsyncSender.relieve`.) Two drainers exist because publishers
live in two worlds:

* :class:`AsyncSender`: one task on the loop that runs the consumers (started by the
  notifier's owner), for publishes from async code and from threads that hop to that loop.
* :class:`ThreadSender`: one daemon thread with a synchronous client, for processes or
  threads with no such loop (management commands, the shell, WSGI workers).

Both pipeline whatever has queued up into one round trip, keep publication order, drop the
oldest payload when the queue is full (a newer watermark supersedes an older one), and count
every payload. Failures are logged at debug: pub/sub is at-most-once anyway, and the
database stays the truth.

A failed round trip is not the end of its notifications: while our PUBLISH fails, the other
replicas (and the reference's) miss our bumps and, if their own connections are fine, have
no reason to suspect it. So the payloads of a failed round trip wait to be sent again, first
in the next batch, keeping only the newest per conversation (a newer watermark covers an
older one: counted ``mirror_superseded``), at most ``capacity`` conversations. Once Redis
takes publishes again, the other replicas' consumers get each bump late but get it. When
some had to be given up (more failed conversations than ``capacity``, or the queue itself
overflowed), the sender also publishes a resync request on ``<channel>:resync``: our
replicas then re-read every local socket (see :mod:`notifier.resync`).

Counters: ``mirrored`` (sent; re-sent ones too), ``mirror_failures`` (payloads in failed
round trips, once per attempt), ``mirror_dropped`` (given up: queue or retry set full,
unsent at shutdown), ``mirror_superseded`` (a newer bump of the same conversation replaced
it while it waited to be re-sent), ``resync_requests`` (resync requests published).
"""

import asyncio
import atexit
import collections
import logging
import threading
import weakref

from . import pipeline
from .backoff import Backoff
from .conf import mask_url
from .resync import control_channel
from .tasks import cancel_and_wait

logger = logging.getLogger(__name__)

_CLIENT_NAME = "webchat-notifier-publish"

#: Most PUBLISH commands sent in one pipeline.
BATCH_SIZE = 256

#: Pause after a failed round trip (ms, ±20 %): short, because Redis usually comes back fast,
#: and capped low so notifications resume within a second of Redis answering again.
RETRY_SCHEDULE_MS = (100, 250, 500, 1000)

#: Longest an async publisher waits for room in the queue, and only while Redis answers.
MAX_PUBLISH_WAIT = 0.005

#: A round trip slower than this counts as Redis not answering: publishers stop waiting.
SLOW_ROUND_TRIP = 0.05


class _Queue:
    """The bounded FIFO both senders share, and the payloads of failed round trips.

    Items are ``(key, payload)``: the key names the conversation (``(tenant_id,
    conversation_id)``), or is None for a resync request. ``push`` returns whether it dropped
    the oldest item.
    """

    def __init__(self, capacity, resync_request=None):
        self.capacity = capacity
        self.items = collections.deque()
        #: key -> payload of failed round trips, oldest first; sent before ``items``.
        self.retry = collections.OrderedDict()
        #: Notifications were given up: publish ``resync_request`` with the next batch.
        self.lost = False
        self.resync_request = resync_request

    def __len__(self):
        return len(self.items) + len(self.retry)

    def push(self, item):
        dropped = len(self.items) >= self.capacity
        if dropped:
            self.items.popleft()
            self.lost = True
        self.items.append(item)
        return dropped

    def take(self):
        """The next batch: retries first (they are older), then queued items, then a resync
        request when notifications were lost."""
        batch = []
        retry = self.retry
        while retry and len(batch) < BATCH_SIZE:
            batch.append(retry.popitem(last=False))
        items = self.items
        while items and len(batch) < BATCH_SIZE:
            batch.append(items.popleft())
        if self.lost and self.resync_request is not None and len(batch) < BATCH_SIZE:
            self.lost = False
            batch.append((None, self.resync_request))
        return batch

    def failed(self, batch):
        """Keep a failed batch for the next one; return ``(superseded, dropped)`` counts."""
        superseded = dropped = 0
        retry = self.retry
        for key, payload in batch:
            if key is None:
                self.lost = True  # the resync request goes out again with the next batch
                continue
            if key in retry:
                superseded += 1  # later in the batch means newer
                retry.move_to_end(key)
            retry[key] = payload
        while len(retry) > self.capacity:
            retry.popitem(last=False)
            dropped += 1
            self.lost = True
        return superseded, dropped

    def discard(self):
        """Empty everything (shutdown); return how many notifications were given up."""
        count = len(self.items) + len(self.retry)
        self.items.clear()
        self.retry.clear()
        return count


def _sent(counters, batch):
    notifications = sum(1 for key, _ in batch if key is not None)
    counters.incr("mirrored", notifications)
    if notifications != len(batch):
        counters.incr("resync_requests")


def _failed(counters, queue, batch):
    counters.incr("mirror_failures", sum(1 for key, _ in batch if key is not None))
    superseded, dropped = queue.failed(batch)
    if superseded:
        counters.incr("mirror_superseded", superseded)
    if dropped:
        counters.incr("mirror_dropped", dropped)


class AsyncSender:
    """Drains the queue from one task on one event loop; all methods run on that loop."""

    def __init__(self, transport, channel, *, capacity, counters, resync_request=None):
        self.transport = transport
        self.channel = channel
        self.control_channel = control_channel(channel)
        self.counters = counters
        self._queue = _Queue(capacity, resync_request)
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
        self._failing = False
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
        if self._failing:
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
                    _failed(self.counters, self._queue, batch)
                    logger.debug("PUBLISH of %d notification(s) to %s failed: %r",
                                 len(batch), mask_url(self.transport.url), exc)
                    if isinstance(exc, TimeoutError):
                        # Cut off mid-round trip, replies may still be on their way: never
                        # reuse that connection. redis-py closes one cut off in a read, not
                        # one cut off in its handshake; this closes either.
                        await client.connection_pool.disconnect()
                    self._failing = True
                    self._inflight, self._inflight_since = 0, None
                    await asyncio.sleep(backoff.next_delay())
                else:
                    _sent(self.counters, batch)
                    self._failing = False
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


class ThreadSender:
    """Drains the queue from one daemon thread with a synchronous client; thread-safe."""

    def __init__(self, transport, channel, *, capacity, counters, resync_request=None):
        self.transport = transport
        self.channel = channel
        self.control_channel = control_channel(channel)
        self.counters = counters
        self._queue = _Queue(capacity, resync_request)
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
                    logger.debug("PUBLISH of %d notification(s) to %s failed: %r",
                                 len(batch), mask_url(self.transport.url), exc)
                    with self._cond:
                        _failed(self.counters, self._queue, batch)
                        self._inflight = 0
                        if self._closing:
                            # Shutting down and Redis is away: give up on the rest.
                            self.counters.incr("mirror_dropped", self._queue.discard())
                            return
                        self._cond.wait(backoff.next_delay())
                else:
                    _sent(self.counters, batch)
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


@atexit.register
def _close_thread_senders_at_exit():
    for sender in list(_live_thread_senders):
        sender.close(timeout=2.0)
