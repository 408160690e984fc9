"""The backplane listener: one SUBSCRIBE connection, turned into local group sends.

For each message on the global channel, in the reference's order: decode it (else drop as
``malformed``), drop it when this instance published it (``self_echo``, whatever its UUID
spelling or version), drop it when its version is not 1 (``unknown_version``), else deliver
it to the local group. Each drop is counted by reason.

When the connection fails the listener reconnects after 100, 250, 500, 1000, 2000, then
every 5000 ms (±20 % jitter, see :mod:`notifier.backoff`), and starts over at 100 ms once
subscribed again. Anything else that goes wrong is logged with its traceback and the loop
restarts after 500 ms. Messages published while it was away are lost (pub/sub is at most
once): they are hints to re-read the database, which stays the truth.

The listener is a class with an owner: ``start()`` makes the task, ``aclose()`` cancels it
and waits. Other code reads :attr:`Listener.state`, :attr:`Listener.attempt` and
:attr:`Listener.counters` (or :meth:`Listener.stats`) from any thread.
"""

import asyncio
import logging

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import wire
from .backoff import Backoff
from .conf import DEFAULT_CHANNEL, mask_url
from .stats import Counters

logger = logging.getLogger(__name__)

IDLE = "idle"
CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
CLOSED = "closed"

MALFORMED = "malformed"
SELF_ECHO = "self_echo"
UNKNOWN_VERSION = "unknown_version"
DROP_REASONS = (MALFORMED, SELF_ECHO, UNKNOWN_VERSION)

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
    """

    def __init__(
        self,
        url,
        *,
        deliver,
        instance_id,
        channel=DEFAULT_CHANNEL,
        observer=None,
        backoff=None,
        connect_timeout=2.0,
        ping_interval=15.0,
        restart_delay=RESTART_DELAY,
    ):
        self.url = url
        self.channel = channel
        self.instance_id = instance_id
        self._deliver = deliver
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
        self.counters = Counters("delivered", *DROP_REASONS, "connects", "disconnects",
                                 "errors")
        self._connected = asyncio.Event()
        self._task = None

    def __repr__(self):
        return (f"<Listener {mask_url(self.url)} channel={self.channel!r} state={self.state} "
                f"attempt={self.attempt}>")

    @property
    def connected(self):
        return self.state == CONNECTED

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
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    raise
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
        try:
            while True:
                try:
                    await self._session()
                except CONNECTION_ERRORS as exc:
                    await asyncio.sleep(self._connection_lost(exc))
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

    async def check(self):
        """Connect and subscribe once, then disconnect; raise on failure (``--check``)."""
        client, pubsub = self._connect()
        try:
            async with asyncio.timeout(self.connect_timeout * 2):
                await pubsub.subscribe(self.channel)
                await self._confirm(pubsub)
        finally:
            await pubsub.aclose()
            await client.aclose()

    def _connect(self):
        # A fresh client per session and no redis-py retries: reconnecting (and its backoff,
        # state and counters) is this class's job, not hidden inside a command.
        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.connect_timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name="webchat-notifier-listener",
        )
        return client, client.pubsub()

    async def _confirm(self, pubsub):
        # Redis answers SUBSCRIBE before it forwards any message on the channel.
        while True:
            response = await pubsub.parse_response(block=False, timeout=self.connect_timeout)
            if response is None:
                raise TimeoutError(f"no SUBSCRIBE confirmation within {self.connect_timeout} s")
            if response[0] == b"subscribe":
                return

    async def _session(self):
        self.state = RECONNECTING if self.attempt else CONNECTING
        client, pubsub = self._connect()
        try:
            # subscribe() before any read: redis-py refuses get_message() on an unsubscribed
            # PubSub (its connection is only made by the first command).
            await pubsub.subscribe(self.channel)
            await self._confirm(pubsub)
            self._subscribed()
            pinged = False
            while True:
                response = await pubsub.parse_response(block=False, timeout=self.ping_interval)
                if response is None:
                    if pinged:
                        raise TimeoutError(f"no answer to PING within {self.ping_interval} s")
                    await pubsub.ping()
                    pinged = True
                    continue
                pinged = False
                if response[0] == b"message":
                    await self.handle(response[2])
        finally:
            self._connected.clear()
            await pubsub.aclose()
            await client.aclose()

    def _subscribed(self):
        after = self.attempt
        self.counters.incr("connects")
        self.state = CONNECTED
        self.attempt = 0
        self.last_error = None
        self.backoff.reset()
        self._connected.set()
        if after:
            logger.info("backplane listener resubscribed to %r after %d attempt(s)",
                        self.channel, after)
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
        self.observer.disconnected(self, error, delay)
        return delay

    async def handle(self, payload):
        """Decode one payload and deliver or drop it. Returns ``None`` when delivered, else
        the drop reason. Called by the loop for every message; tests call it directly."""
        try:
            message = wire.decode(payload)
        except wire.MalformedPayload as exc:
            return self._drop(MALFORMED, payload, exc)
        # Self-echo first: our own message is dropped whatever version it claims.
        if message.instance_id == self.instance_id:
            return self._drop(SELF_ECHO, payload)
        if message.version != SUPPORTED_VERSION:
            return self._drop(UNKNOWN_VERSION, payload)
        await self._deliver(message.event)
        self.counters.incr("delivered")
        self.observer.delivered(self, message)
        return None

    def _drop(self, reason, payload, error=None):
        self.counters.incr(reason)
        logger.debug("backplane listener dropped a %d-byte payload: %s%s", len(payload), reason,
                     f" ({error})" if error else "")
        self.observer.dropped(self, reason, payload, error)
        return reason
