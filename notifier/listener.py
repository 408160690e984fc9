"""The backplane listener: one SUBSCRIBE connection, turned into local group sends.

For each message on the global channel, in the reference's order: decode it (else drop as
``malformed``), drop it when this instance published it (``self_echo``, whatever its UUID
spelling or version), drop it when its version is not 1 (``unknown_version``), else deliver
it to the local group. Each drop is counted by reason. With signing keys
(:mod:`notifier.signing`), a well-formed message that is unsigned or forged is dropped as
``bad_signature`` before the self-echo check (a forgery claiming our id counts as one).

When the connection fails the listener reconnects after 100, 250, 500, 1000, 2000, then
every 5000 ms (±20 % jitter, see :mod:`notifier.backoff`), and starts over at 100 ms once
subscribed again. Anything else that goes wrong is logged with its traceback and the loop
restarts after 500 ms. Messages published while it was away are lost (pub/sub is at most
once): they are hints to re-read the database, which stays the truth.

Two optional companions close that gap (:meth:`RedisNotifier.listener
<notifier.backends.redis.RedisNotifier.listener>` gives both):

* a :class:`~notifier.resync.Resyncer`, asked after every subscription (and when a peer
  announces on ``<channel>:resync`` that it lost notifications) to make every local consumer
  re-read from its cursor;
* a :class:`~notifier.probe.Probe`, whose messages on ``<channel>:probe:<instance id>``
  (subscribed on the same connection) prove that messages still arrive: a probe that does not
  come back makes the listener drop the connection and reconnect, and a probe PUBLISH that
  Redis accepts while the listener waits to reconnect cuts the wait short.

Messages stamped with a publish time (:mod:`notifier.lag`) feed the :attr:`Listener.lag`
histogram.

The listener is a class with an owner: ``start()`` makes the task, ``aclose()`` cancels it
and waits. Other code reads :attr:`Listener.state`, :attr:`Listener.attempt` and
:attr:`Listener.counters` (or :meth:`Listener.stats`) from any thread.
"""

import asyncio
import json
import logging
import time
import uuid

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import lag, oplog, wire
from .backoff import Backoff
from .conf import DEFAULT_CHANNEL, mask_url
from .probe import ProbeOverdue
from .reader import BatchReader
from .resync import CONNECT, PEER, RECONNECT, control_channel
from .stats import Histogram, LoopCounters
from .tasks import cancel_and_wait, raise_if_cancelled

logger = logging.getLogger(__name__)

IDLE = "idle"
CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
CLOSED = "closed"

MALFORMED = "malformed"
SELF_ECHO = "self_echo"
UNKNOWN_VERSION = "unknown_version"
BAD_SIGNATURE = "bad_signature"
DROP_REASONS = (MALFORMED, SELF_ECHO, UNKNOWN_VERSION, BAD_SIGNATURE)

#: The only wire version a listener delivers.
SUPPORTED_VERSION = 1

#: Seconds before the loop starts over after an unexpected exception.
RESTART_DELAY = 0.5

# Errors that mean "the connection is gone": reconnect with backoff. Any other exception is
# a bug or a surprise: log it with its traceback and restart after RESTART_DELAY.
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError,
                     OSError)


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
    """Subscribes to ``channel`` at ``url`` and calls ``await deliver(event)`` per message.

    ``instance_id``: this process's UUID (its own messages are dropped). ``backoff``: a
    :class:`notifier.backoff.Backoff`. ``ping_interval``: seconds of silence after which the
    listener PINGs, and gives the connection up when that PING gets no answer in as long.
    ``resyncer``: a :class:`~notifier.resync.Resyncer` asked to resync the local consumers
    after each subscription and on a peer's request. ``probe``: a
    :class:`~notifier.probe.Probe` on this listener's probe channel, run while the listener
    runs. ``signing``: a :class:`~notifier.signing.Keyring`; messages not signed with one of
    its keys are dropped (``bad_signature``, before the self-echo check), resync requests
    ignored (``control_bad_signature``). ``deliver_nowait``: an optional synchronous
    ``deliver`` (:meth:`BaseNotifier.local_send_nowait
    <notifier.backends.base.BaseNotifier.local_send_nowait>`) tried first for each message;
    it returns False when the message must go through ``deliver`` after all.
    """

    def __init__(
        self,
        url,
        *,
        deliver,
        instance_id,
        deliver_nowait=None,
        channel=DEFAULT_CHANNEL,
        observer=None,
        backoff=None,
        connect_timeout=2.0,
        ping_interval=15.0,
        restart_delay=RESTART_DELAY,
        resyncer=None,
        probe=None,
        signing=None,
    ):
        self.url = url
        self.channel = channel
        self.instance_id = instance_id
        self._deliver = deliver
        self._deliver_nowait = deliver_nowait
        self.observer = observer or ListenerObserver()
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.restart_delay = restart_delay
        #: ``idle``, ``connecting``, ``connected``, ``reconnecting`` or ``closed``.
        self.state = IDLE
        #: Consecutive failed attempts (0 while connected).
        self.attempt = 0
        #: The error that ended the last connection, if any.
        self.last_error = None
        self.resyncer = resyncer
        self.probe = probe
        self.signing = signing
        self.control_channel = control_channel(channel)
        self._control_bytes = self.control_channel.encode()
        self._channel_bytes = channel.encode()
        # Written on the listener's loop only: increments take no lock (see LoopCounters).
        self.counters = LoopCounters("received", "delivered", *DROP_REASONS, "connects",
                                     "disconnects", "errors", "peer_resyncs",
                                     "control_bad_signature", "reconnect_failures")
        #: Seconds from a stamped message's PUBLISH to its delivery here.
        self.lag = Histogram()
        self._connected = asyncio.Event()
        self._wake = None
        self._woken = False  # once per run of failures: then the backoff decides again
        self._task = None

    def __repr__(self):
        return (f"<Listener {mask_url(self.url)} channel={self.channel!r} state={self.state} "
                f"attempt={self.attempt}>")

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

    def wake(self):
        """Called on the loop when Redis is known to answer again (the probe got a PUBLISH
        through): a reconnect delay in progress ends now. Once per run of failures, so a
        listener that still cannot subscribe keeps to its backoff."""
        if self._wake is not None and self.state != CONNECTED and not self._woken:
            self._woken = True
            self._wake.set()

    def start(self):
        """Called by the owner on its loop: run :meth:`run` as a task that :meth:`aclose`
        cancels. Returns the task."""
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{self!r} is already running")
        self._connected = asyncio.Event()
        self._wake = asyncio.Event()
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
        """The loop: connect, subscribe, deliver; reconnect on failure. Runs until cancelled
        (by :meth:`aclose` when started with :meth:`start`)."""
        logger.info("backplane listener starting: channel %r at %s, instance %s",
                    self.channel, mask_url(self.url), self.instance_id)
        if self._wake is None:
            self._wake = asyncio.Event()
        if self.probe is not None:
            self.probe.start()
        try:
            while True:
                try:
                    await self._session()
                except CONNECTION_ERRORS as exc:
                    await self._sleep_unless_woken(self._connection_lost(exc))
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

    async def _sleep_unless_woken(self, delay):
        # A wake that came during the failed attempt counts too: it is not cleared first.
        wake = self._wake
        try:
            async with asyncio.timeout(delay):
                await wake.wait()
            logger.info("backplane listener: Redis answers again, reconnecting now")
        except TimeoutError:
            pass
        wake.clear()

    async def check(self):
        """Connect and subscribe once, then disconnect; raise on failure (``--check``).

        With a probe, one probe must also make its round trip (the same proof as readiness);
        returns its time in seconds (None without a probe).
        """
        client, pubsub = self._connect()
        try:
            async with asyncio.timeout(self.connect_timeout * 2):
                await pubsub.subscribe(*self.channels)
                await self._confirm(pubsub, len(self.channels))
            if self.probe is not None:
                return await self.probe.round_trip(pubsub)
            return None
        finally:
            await pubsub.aclose()
            await client.aclose()

    def _connect(self):
        # A fresh client per session and no redis-py retries: reconnecting (and its backoff,
        # state and counters) is this class's job, not hidden inside a command. RESP2: the
        # same messages as RESP3's push messages, which redis-py 8 also formats for a debug
        # log, logged or not (nearly half the cost of reading one message).
        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.connect_timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name="webchat-notifier-listener",
            protocol=2,
        )
        return client, client.pubsub()

    async def _confirm(self, pubsub, count=1):
        # Redis answers SUBSCRIBE (once per channel) before it forwards any message on it.
        confirmed = 0
        while confirmed < count:
            response = await pubsub.parse_response(block=False, timeout=self.connect_timeout)
            if response is None:
                raise TimeoutError(f"no SUBSCRIBE confirmation within {self.connect_timeout} s")
            if response[0] == b"subscribe":
                confirmed += 1

    async def _session(self):
        self.state = RECONNECTING if self.attempt else CONNECTING
        client, pubsub = self._connect()
        reader = None
        try:
            # subscribe() before any read: redis-py refuses get_message() on an unsubscribed
            # PubSub (its connection is only made by the first command).
            channels = self.channels
            await pubsub.subscribe(*channels)
            raise_if_cancelled()
            await self._confirm(pubsub, len(channels))
            self._subscribed()
            reader = BatchReader(pubsub)
            probe = self.probe
            # With a probe, wake up at least once per probe interval to see if one is overdue.
            wait = self.ping_interval if probe is None else min(self.ping_interval,
                                                                probe.interval)
            heard_at, pinged_at = time.monotonic(), None
            while True:
                # Everything already received, in order (see notifier.reader), or [] after
                # `wait` seconds of silence.
                batch = await reader.read(wait)
                now = time.monotonic()
                if not batch:
                    # Wedged means silent: a listener that is merely behind (its probe queued
                    # after a burst it is still reading) is not, and leaving would lose the burst.
                    if probe is not None and now - heard_at > probe.timeout:
                        overdue = probe.overdue()
                        if overdue:
                            raise ProbeOverdue(f"subscriber connection wedged: {overdue}")
                    if pinged_at is not None:
                        if now - pinged_at >= self.ping_interval:
                            raise TimeoutError(
                                f"no answer to PING within {self.ping_interval} s")
                    elif now - heard_at >= self.ping_interval:
                        await pubsub.ping()
                        raise_if_cancelled()
                        pinged_at = now
                    continue
                heard_at, pinged_at = now, None
                deliver, nowait = self._deliver, self._deliver_nowait
                for response in batch:
                    if response[0] == b"message":
                        source = response[1]
                        if source == self._channel_bytes:
                            # handle(), inlined: a synchronous delivery when the layer has one.
                            payload = response[2]
                            message = self._accept(payload)
                            if type(message) is not str:  # else dropped, for that reason
                                event = message.event
                                if nowait is None or not nowait(event):
                                    await deliver(event)
                                self._delivered(payload, message)
                        elif probe is not None and probe.is_probe(source):
                            probe.received(response[2])
                        elif source == self._control_bytes:
                            self._control(response[2])
        finally:
            if reader is not None:
                reader.close()
            self._connected.clear()
            if self.probe is not None:
                self.probe.unsubscribed()
            await pubsub.aclose()
            await client.aclose()

    def _subscribed(self):
        after = self.attempt
        self._woken = False
        self._wake.clear()
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
        self._gone(error)
        delay = self.backoff.next_delay()
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

    async def handle(self, payload):
        """Decode one payload and deliver or drop it. Returns ``None`` when delivered, else
        the drop reason. Tests call it directly; the loop runs the same steps inline."""
        message = self._accept(payload)
        if type(message) is str:
            return message
        await self._deliver(message.event)
        self._delivered(payload, message)
        return None

    def _accept(self, payload):
        """Count and decode ``payload``; return the message to deliver, or the reason it
        was dropped (a str; counted and logged)."""
        self.counters.incr("received")
        try:
            message = wire.decode(payload)
        except wire.MalformedPayload as exc:
            return self._drop(MALFORMED, payload, exc)
        if self.signing is not None:
            forged = self.signing.verify(message, payload)
            if forged is not None:
                return self._drop(BAD_SIGNATURE, payload, forged)
        # Self-echo first: our own message is dropped whatever version it claims.
        if message.instance_id == self.instance_id:
            return self._drop(SELF_ECHO, payload)
        if message.version != SUPPORTED_VERSION:
            return self._drop(UNKNOWN_VERSION, payload)
        return message

    def _delivered(self, payload, message):
        # After the delivery of ``message``: count it, time it, tell the observer.
        self.counters.incr("delivered")
        stamped = lag.read(payload)
        if stamped is not None:
            self.lag.observe(time.time() - stamped / 1000.0)
        self.observer.delivered(self, message)

    def _control(self, payload):
        """A message on the control channel: a peer lost notifications, resync (not our own)."""
        if self.signing is not None and self.signing.verify_control(payload) is not None:
            self.counters.incr("control_bad_signature")
            logger.debug("ignoring a resync request of %d bytes: bad signature", len(payload))
            return
        try:
            request = json.loads(payload)
            # Any UUID spelling names the same peer; anything else is not a resync request
            # (and is never logged: it could be arbitrarily long).
            origin = uuid.UUID(request["instance_id"][:45])
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            # RecursionError: deeply nested JSON must not take the subscription down.
            logger.debug("ignoring a malformed resync request of %d bytes", len(payload))
            return
        if origin == self.instance_id or self.resyncer is None:
            return
        self.counters.incr("peer_resyncs")
        logger.info("backplane peer %s lost notifications: resyncing local consumers", origin)
        self.resyncer.request(PEER)

    def _drop(self, reason, payload, error=None):
        self.counters.incr(reason)
        logger.debug("backplane listener dropped a %d-byte payload: %s%s", len(payload), reason,
                     f" ({error})" if error else "")
        oplog.payload_dropped(reason, payload, error)
        self.observer.dropped(self, reason, payload, error)
        return reason
