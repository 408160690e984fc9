"""The backplane listener: one subscription, read in batches and handed to its dispatcher.

It owns the connection's life (subscribe through a :class:`~notifier.transport.RedisTransport`,
PING a silent connection, leave a wedged one, reconnect with backoff) and its companions, the
probe and the resyncer. ``start()`` makes the task, ``aclose()`` cancels it and waits.
"""

import asyncio
import contextlib
import logging
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import oplog
from .backoff import Backoff
from .conf import DEFAULT_CHANNEL, mask_url
from .dispatch import (
    COUNTERS,
    DROP_REASONS,  # noqa: F401 - importable from here, as it always was
    Dispatcher,
)
from .exceptions import BackplaneRefused
from .failures import explain
from .probe import ProbeOverdue
from .resync import CONNECT, RECONNECT, control_channel
from .stats import Histogram, LoopCounters
from .tasks import cancel_and_wait
from .transport import transport_for_url

logger = logging.getLogger(__name__)

IDLE = "idle"
CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
CLOSED = "closed"

#: Seconds before the loop starts over after an unexpected exception.
RESTART_DELAY = 0.5

# Errors that mean "the connection is gone": reconnect with backoff. A permission the ACL
# denies (NOPERM) too: like a wrong password it lasts until an operator changes something,
# and retrying at the backoff's pace finds out when they did. Any other exception is a bug
# or a surprise: log it with its traceback and restart after RESTART_DELAY.
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError,
                     OSError, NoPermissionError)

#: Seconds between two ERROR records of a refusal (password, TLS, ACL) that goes on.
REFUSED_LOG_INTERVAL = 60.0


class ListenerObserver:
    """Hooks a listener calls on its loop, synchronously (keep them quick). The defaults do
    nothing; the management command prints a line from each."""

    def connected(self, listener, after_attempts):
        """Subscribed; ``after_attempts`` failed attempts preceded (0 on a clean start)."""

    def disconnected(self, listener, error, delay):
        """A connection attempt failed or the connection broke; retrying in ``delay`` s."""

    def delivered(self, listener, message):
        """``message`` (a :class:`notifier.wire.WireMessage`) went to the local group."""

    def dropped(self, listener, reason, payload, error=None):
        """``payload`` was dropped for ``reason`` (``error``: the decode error if malformed)."""


class Listener:
    """Subscribes to ``channel`` and calls ``await deliver(event)`` per message to deliver.

    ``transport``: a :class:`~notifier.transport.RedisTransport`, or a Redis URL for one.
    ``instance_id``: this process's UUID (its own messages are dropped).
    ``deliver_nowait``: an optional synchronous ``deliver``, tried first (see
    :class:`~notifier.dispatch.Dispatcher`). ``backoff``: a
    :class:`~notifier.backoff.Backoff`. ``ping_interval``: seconds of silence before a PING,
    and then before giving the connection up. ``resyncer``: a
    :class:`~notifier.resync.Resyncer`, asked after each subscription and on a peer's
    request. ``probe``: a :class:`~notifier.probe.Probe` on this listener's probe channel.
    ``signing``: a :class:`~notifier.signing.Keyring` that messages must be signed with.
    """

    def __init__(self, transport, *, deliver, instance_id, deliver_nowait=None,
                 channel=DEFAULT_CHANNEL, observer=None, backoff=None, connect_timeout=2.0,
                 ping_interval=15.0, restart_delay=RESTART_DELAY, resyncer=None, probe=None,
                 signing=None):
        if isinstance(transport, str):
            transport = transport_for_url(transport, connect_timeout=connect_timeout)
        self.transport = transport
        self.channel = channel
        self.control_channel = control_channel(channel)
        self.instance_id = instance_id
        self.observer = observer or ListenerObserver()
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.restart_delay = restart_delay
        self.resyncer = resyncer
        self.probe = probe
        self.signing = signing
        #: ``idle``, ``connecting``, ``connected``, ``reconnecting`` or ``closed``.
        self.state = IDLE
        #: Consecutive failed attempts (0 while connected).
        self.attempt = 0
        #: The error that ended the last connection, if any.
        self.last_error = None
        # Written on the listener's loop only: increments take no lock (see LoopCounters).
        self.counters = LoopCounters(*COUNTERS, "connects", "disconnects", "errors",
                                     "reconnect_failures")
        #: Seconds from a stamped message's PUBLISH to its delivery here.
        self.lag = Histogram()
        self.dispatcher = Dispatcher(self, deliver=deliver, deliver_nowait=deliver_nowait,
                                     counters=self.counters, observer=self.observer,
                                     lag=self.lag)
        self._connected = asyncio.Event()
        self._woken = False  # once per run of failures: then the backoff decides again
        self._task = None
        self._refusals = oplog.RateLimiter(REFUSED_LOG_INTERVAL)

    def __repr__(self):
        return (f"<Listener {mask_url(self.url)} channel={self.channel!r} state={self.state} "
                f"attempt={self.attempt}>")

    @property
    def url(self):
        return self.transport.url

    @property
    def connected(self):
        return self.state == CONNECTED

    @property
    def channels(self):
        """The channels subscribed on the one connection: global, control, probe."""
        channels = [self.channel, self.control_channel]
        if self.probe is not None:
            channels.append(self.probe.channel)
        return channels

    def stats(self):
        """State and counters as one dict (for health endpoints and tests)."""
        return {"state": self.state, "attempt": self.attempt, **self.counters.snapshot()}

    def start(self):
        """Called by the owner on its loop: run :meth:`run` as a task that :meth:`aclose`
        cancels. Returns the task."""
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{self!r} is already running")
        self._connected = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self.run(), name=f"notifier-listener:{self.channel}"
        )
        return self._task

    async def aclose(self):
        """Called by the owner at shutdown, on the listener's loop: cancel and await it."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self.state = CLOSED

    async def wait_connected(self, timeout=None):
        """Wait until subscribed; raise ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def run(self):
        """The loop: connect, subscribe, dispatch; reconnect on failure. Runs until cancelled
        (by :meth:`aclose` when started with :meth:`start`)."""
        logger.info("backplane listener starting: channel %r at %s, instance %s",
                    self.channel, mask_url(self.url), self.instance_id)
        if self.probe is not None:
            self.probe.start()
        try:
            while True:
                try:
                    await self._session()
                except CONNECTION_ERRORS as exc:
                    await self._sleep_unless_answered(self._connection_lost(exc))
                except Exception as exc:
                    self.counters.incr("errors")
                    self._gone(exc)
                    logger.exception("backplane listener failed; restarting in %.1f s",
                                     self.restart_delay)
                    await asyncio.sleep(self.restart_delay)
        finally:
            self._connected.clear()
            self.state = CLOSED
            logger.info("backplane listener stopped: channel %r", self.channel)
            # Our own cancellation propagates out of the first await: both are stopped first.
            companions = [c for c in (self.probe, self.resyncer) if c is not None]
            for companion in companions:
                companion.cancel()
            # Each aclose() re-raises our cancellation: gather awaits them all regardless.
            await asyncio.gather(*(c.aclose() for c in companions), return_exceptions=True)

    async def _sleep_unless_answered(self, delay):
        # A probe PUBLISH that Redis accepts (since the connection ended, so during the failed
        # attempt too) ends the delay: once per run of failures, so a listener that still
        # cannot subscribe keeps to its backoff.
        if self.probe is None or self._woken:
            await asyncio.sleep(delay)
            return
        try:
            async with asyncio.timeout(delay):
                await self.probe.answered.wait()
        except TimeoutError:
            return
        self._woken = True
        logger.info("backplane listener: Redis answers again, reconnecting now")

    async def check(self):
        """Connect and subscribe once, then disconnect; raise on failure (``--check``).

        With a probe, one probe must also make its round trip (the same proof as readiness);
        returns its time in seconds (None without a probe).
        """
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(self.connect_timeout * 2):
                subscription = await stack.enter_async_context(self._subscribe())
            if self.probe is not None:
                return await self.probe.round_trip(subscription)
            return None

    def _subscribe(self):
        # A fresh connection per session, with no redis-py retries: reconnecting (and its
        # backoff, state and counters) is this class's job, not hidden inside a command.
        return self.transport.subscribe(self.channels, timeout=self.connect_timeout,
                                        name="webchat-notifier-listener")

    async def _session(self):
        self.state = RECONNECTING if self.attempt else CONNECTING
        async with self._subscribe() as subscription:
            try:
                self._subscribed()
                await self._read(subscription)
            finally:
                self._connected.clear()
                if self.probe is not None:
                    self.probe.unsubscribed()

    async def _read(self, subscription):
        probe, dispatch = self.probe, self.dispatcher.dispatch
        # With a probe, wake up at least once per probe interval to see if one is overdue.
        wait = self.ping_interval if probe is None else min(self.ping_interval, probe.interval)
        heard_at, pinged_at = time.monotonic(), None
        while True:
            batch = await subscription.read(wait)
            now = time.monotonic()
            if batch:
                heard_at, pinged_at = now, None
                await dispatch(batch)
                continue
            # Wedged means silent: a listener that is merely behind (its probe queued after a
            # burst it is still reading) is not, and leaving would lose the burst.
            if probe is not None and now - heard_at > probe.timeout:
                overdue = probe.overdue()
                if overdue:
                    raise ProbeOverdue(f"subscriber connection wedged: {overdue}")
            if pinged_at is not None:
                if now - pinged_at >= self.ping_interval:
                    raise TimeoutError(f"no answer to PING within {self.ping_interval} s")
            elif now - heard_at >= self.ping_interval:
                await subscription.ping()
                pinged_at = now

    def _subscribed(self):
        after = self.attempt
        self._woken = False
        self.counters.incr("connects")
        if self.probe is not None:
            self.probe.subscribed()
        if self.resyncer is not None:
            # Anything published while we were not subscribed is lost for us: every local
            # consumer re-reads from its cursor (jittered; see notifier.resync).
            self.resyncer.request(CONNECT if self.counters["connects"] == 1 else RECONNECT)
        self.state = CONNECTED
        self.attempt = 0
        self.last_error = None
        self.backoff.reset()
        self._connected.set()
        if after:
            logger.info("backplane listener resubscribed to %r after %d attempt(s)",
                        self.channel, after)
            oplog.reconnected(mask_url(self.url), after)
        self.observer.connected(self, after)

    def _gone(self, error):
        if self.state == CONNECTED:
            self.counters.incr("disconnects")
        self.state = RECONNECTING
        self.attempt += 1
        self.last_error = error

    def _connection_lost(self, error):
        was_connected = self.state == CONNECTED
        error = explain(error, self.url, command="SUBSCRIBE", channels=self.channels)
        self._gone(error)
        delay = self.backoff.next_delay()
        if isinstance(error, BackplaneRefused):
            # Not a network blip: ERROR, but once a minute while it goes on.
            allowed, suppressed = self._refusals.allow(type(error))
            if allowed:
                logger.error("backplane listener: %s; retrying in %d ms (attempt %d%s)", error,
                             delay * 1000, self.attempt,
                             f", {suppressed} more refusal(s) not logged" if suppressed else "")
        else:
            log = logger.warning if was_connected or self.attempt == 1 else logger.info
            log("backplane listener %s %s: %s; reconnecting in %d ms (attempt %d)",
                "lost" if was_connected else "cannot reach", mask_url(self.url), error,
                delay * 1000, self.attempt)
        if not was_connected:
            self.counters.incr("reconnect_failures")
        oplog.connection_lost(mask_url(self.url), error, was_connected=was_connected,
                              attempt=self.attempt, delay=delay)
        self.observer.disconnected(self, error, delay)
        return delay
