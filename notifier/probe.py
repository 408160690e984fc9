"""The backplane probe: a message that makes a round trip through Redis back to the listener.

Subscribed is not the same as working: the probe PUBLISHes to ``<channel>:probe:<instance
id>`` every second, and the listener's subscription must bring it back. Readiness, the
listener's wedge detection and its reconnect delay all read the probe, and a twin's probes
(same instance id, another process) turn readiness red (docs/backplane.md).
Owned by a :class:`~notifier.listener.Listener`, which starts and stops its task.
"""

import asyncio
import logging
import os
import time

from .conf import mask_url
from .failures import explain
from .stats import Counters, Histogram
from .tasks import cancel_and_wait, raise_if_cancelled

logger = logging.getLogger(__name__)

#: Seconds between probes while round trips succeed.
INTERVAL = 1.0
#: Seconds between probes while they fail (or the listener is not subscribed): quick to see
#: Redis come back.
RETRY_INTERVAL = 0.25
#: Seconds a published probe may take to come back before the subscriber is presumed dead;
#: also the PUBLISH timeout.
TIMEOUT = 2.0
#: Seconds since the last completed round trip after which the backplane is not healthy.
STALE = 3.0
#: Probes remembered while waiting for them to come back (older ones count as lost).
MAX_OUTSTANDING = 32


def probe_channel(channel, instance_id):
    """The probe channel of the listener with ``instance_id`` on the global ``channel``."""
    return f"{channel}:probe:{instance_id}"


class ProbeOverdue(TimeoutError):
    """The subscriber connection stopped delivering: the listener reconnects."""


class Probe:
    """PUBLISHes probes to ``channel`` through ``transport`` (a
    :class:`~notifier.transport.RedisTransport`) and times their return.

    :attr:`answered` is set after each PUBLISH Redis accepts. ``clock`` is
    ``time.monotonic``; all times below are on it.
    """

    def __init__(
        self,
        transport,
        channel,
        *,
        interval=INTERVAL,
        retry_interval=RETRY_INTERVAL,
        timeout=TIMEOUT,
        stale=STALE,
        connect_timeout=1.0,
        clock=time.monotonic,
    ):
        if not 0 < retry_interval <= interval:
            raise ValueError("need 0 < retry_interval <= interval")
        if not interval < stale:
            raise ValueError("stale must be longer than the probe interval")
        self.transport = transport
        self.channel = channel
        self._channel_bytes = channel.encode()
        self.interval = interval
        self.retry_interval = retry_interval
        self.timeout = timeout
        self.stale = stale
        self.connect_timeout = connect_timeout
        self.clock = clock
        #: Set when Redis accepts a PUBLISH; cleared when the listener's subscription starts
        #: or ends. The listener waits on it to cut a reconnect delay short.
        self.answered = asyncio.Event()
        self.counters = Counters("sent", "returned", "publish_failures", "lost")
        #: Round-trip times of returned probes, in seconds.
        self.rtt = Histogram()
        #: The last round trip's time (s), when it completed, and the last PUBLISH error.
        self.last_rtt = None
        self.last_ok = None
        self.last_error = None
        #: When the listener's current subscription was confirmed (None: not subscribed).
        self.subscribed_since = None
        #: Random per probe (so per process): tells our probes from a twin's.
        self.nonce = os.urandom(8).hex().encode()
        #: When a twin's probe last arrived (None: never).
        self.duplicate_seen = None
        self._outstanding = {}  # sequence number -> (sent at, receivers)
        self._sequence = 0
        self._unsubscribed_answer = None  # the time Redis said nobody listens
        self._task = None
        #: When the task started (readiness counts a probe that never returned from here).
        self.started_at = None

    def __repr__(self):
        return f"<Probe {self.channel!r} at {mask_url(self.transport.url)}>"

    # Owner side (the listener)

    def start(self):
        """Called by the listener's ``run()``: start the probe task on the running loop."""
        self.answered = asyncio.Event()
        self.started_at = self.clock()
        self._task = asyncio.get_running_loop().create_task(self.run(), name="notifier-probe")
        return self._task

    def cancel(self):
        """Cancel the task without waiting (the owner awaits it with :meth:`aclose`)."""
        if self._task is not None:
            self._task.cancel()

    async def aclose(self):
        """Called by the listener when it stops: cancel the task and wait for it."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def subscribed(self):
        """Called by the listener once its subscription (probe channel included) is confirmed."""
        self.subscribed_since = self.clock()
        self._unsubscribed_answer = None
        self.answered.clear()

    def unsubscribed(self):
        """Called by the listener when its connection ends."""
        self.subscribed_since = None
        self._unsubscribed_answer = None
        self.answered.clear()

    def is_probe(self, channel):
        """Whether a pub/sub message on ``channel`` (bytes) is one of this probe's."""
        return channel == self._channel_bytes

    def payload(self, sequence):
        """The message of probe number ``sequence``: ``b"<sequence>:<nonce>"``."""
        return b"%d:%s" % (sequence, self.nonce)

    def received(self, payload):
        """Called by the listener for each message on the probe channel."""
        number, _, nonce = payload.partition(b":")
        if nonce != self.nonce:
            # Another process publishes on our probe channel: it has our instance id.
            if self.duplicate_seen is None or self.clock() - self.duplicate_seen > self.stale:
                logger.error("another process uses this process's backplane instance id "
                             "(its probes arrive on %r): each drops the other's messages as "
                             "self_echo", self.channel)
            self.duplicate_seen = self.clock()
            return False
        try:
            sequence = int(number)
        except ValueError:
            return False
        sent = self._outstanding.pop(sequence, None)
        if sent is None:
            return False  # not ours, or already given up on
        now = self.clock()
        # Probes are delivered in order: older ones still outstanding were lost.
        for older in [s for s in self._outstanding if s < sequence]:
            del self._outstanding[older]
            self.counters.incr("lost")
        self.last_rtt = now - sent[0]
        self.last_ok = now
        self.rtt.observe(self.last_rtt)
        self.counters.incr("returned")
        return True

    def overdue(self):
        """Why the subscriber connection looks dead (a string), or None while it works.

        Only probes published after the subscription was confirmed count: Redis handled the
        SUBSCRIBE before them, so each must come back on this connection.
        """
        since = self.subscribed_since
        if since is None:
            return None
        now = self.clock()
        if self._unsubscribed_answer is not None:
            return "Redis reports no subscriber on the probe channel"
        for sent_at, _ in self._outstanding.values():
            if sent_at >= since and now - sent_at > self.timeout:
                return f"a probe did not come back within {self.timeout:g} s"
        return None

    def duplicate(self):
        """Why this process's instance id is not its own (a string), or None."""
        seen = self.duplicate_seen
        if seen is None or self.clock() - seen > self.stale:
            return None
        instance = self.channel.rpartition(":probe:")[2]
        return (f"another process uses this process's instance id {instance}: a copied "
                "INSTANCE_ID setting, a worker forked with its parent's id, or a cloned "
                "machine; each drops the other's notifications as self_echo")

    def answering(self):
        """Whether Redis accepted this probe's last PUBLISH (it answers this process)."""
        return self.last_error is None and self.counters["sent"] > 0

    def healthy(self):
        """Whether a round trip completed within the last ``stale`` seconds."""
        return self.last_ok is not None and self.clock() - self.last_ok <= self.stale

    def status(self):
        """A dict for health endpoints and metrics (readable from any thread)."""
        now = self.clock()
        age = None if self.last_ok is None else now - self.last_ok
        error = self.last_error
        return {
            "healthy": self.healthy(),
            "channel": self.channel,
            "last_round_trip_ms": None if self.last_rtt is None else self.last_rtt * 1000.0,
            "since_last_round_trip_s": age,
            "last_error": None if error is None else f"{type(error).__name__}: {error}",
            "duplicate_instance": self.duplicate() is not None,
            **self.counters.snapshot(),
        }

    # The task

    def _client(self):
        return self.transport.client("webchat-notifier-probe",
                                     connect_timeout=self.connect_timeout,
                                     socket_timeout=self.timeout)

    async def run(self):
        """Publish a probe every ``interval`` seconds (``retry_interval`` while unhealthy)."""
        client = self._client()
        try:
            while True:
                await self.publish_one(client)
                healthy = self.healthy() and self.subscribed_since is not None
                await asyncio.sleep(self.interval if healthy else self.retry_interval)
        finally:
            await client.aclose()

    async def publish_one(self, client):
        """PUBLISH one probe with ``client``; returns the receivers Redis counted, or None."""
        self._sequence += 1
        sequence = self._sequence
        sent_at = self.clock()
        try:
            async with asyncio.timeout(self.timeout):
                receivers = await client.publish(self.channel, self.payload(sequence))
            raise_if_cancelled()
        except Exception as exc:
            # CancelledError is no Exception: shutdown goes straight through.
            exc = explain(exc, self.transport.url, command="PUBLISH", channels=(self.channel,))
            self.counters.incr("publish_failures")
            if self.last_error is None or type(exc) is not type(self.last_error):
                logger.debug("backplane probe PUBLISH to %s failed: %r",
                             mask_url(self.transport.url), exc)
            self.last_error = exc
            return None
        self.last_error = None
        self.counters.incr("sent")
        subscribed = self.subscribed_since
        if (subscribed is not None and sent_at >= subscribed and receivers == 0
                and getattr(self.transport, "counts_every_subscriber", True)):
            self._unsubscribed_answer = self.clock()
        self._outstanding[sequence] = (sent_at, receivers)
        while len(self._outstanding) > MAX_OUTSTANDING:
            del self._outstanding[min(self._outstanding)]
            self.counters.incr("lost")
        self.answered.set()
        return receivers

    async def round_trip(self, subscription, timeout=None):
        """One probe through ``subscription`` (a :class:`~notifier.transport.Subscription`
        that includes the probe channel); return its round-trip time in seconds. Used by
        ``--check``; raises ``TimeoutError``."""
        timeout = self.timeout if timeout is None else timeout
        client = self._client()
        try:
            async with asyncio.timeout(timeout):
                self.subscribed()
                receivers = await self.publish_one(client)
                if receivers is None:
                    raise self.last_error
                while True:
                    for reply in await subscription.read(timeout):
                        if (reply[0] == b"message" and self.is_probe(reply[1])
                                and self.received(reply[2])):
                            return self.last_rtt
        except TimeoutError:
            raise TimeoutError(f"the probe did not come back within {timeout:g} s") from None
        finally:
            await client.aclose()
