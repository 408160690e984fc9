"""The Redis backplane: local delivery first, then a wire v1 PUBLISH on the global channel.

The PUBLISH is fire-and-forget: the payload joins a bounded queue that one owned sender
drains (see :mod:`notifier.outbound`), so a publisher never waits on Redis, even while it is
down. Other replicas' listeners turn the message back into a local group send; this
process's own listener drops it as a self-echo (its consumers already have it).

Each payload carries a publish timestamp (``"ts"``, see :mod:`notifier.lag`) unless
``publish_timestamps=False``. The listener this backend builds probes its subscription
(:mod:`notifier.probe`) and resyncs the local consumers after each (re)subscription and on a
peer's request (:mod:`notifier.resync`).

With signing keys (``signing``, a :class:`~notifier.signing.Keyring`), every payload and
resync request carries a key id and an HMAC-SHA256 signature, and the listener drops what
is unsigned or forged (see :mod:`notifier.signing`).
"""

import asyncio
import logging
import threading
import time

import redis
from channels.layers import DEFAULT_CHANNEL_LAYER

from .. import lag, wire
from ..compat import redis_py
from ..conf import DEFAULT_CHANNEL, mask_url
from ..control import encode_resync_request
from ..exceptions import BackplaneRefused, BackplaneUnavailable, InvalidNotifierConfiguration
from ..outbound import AsyncSender, ThreadSender
from ..transport import transport_for_url
from .base import BaseNotifier

logger = logging.getLogger(__name__)


class RedisNotifier(BaseNotifier):
    """Mirrors every publish to Redis pub/sub (wire v1) and listens for other replicas'.

    ``url``: a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL.
    ``channel``: the global channel.
    ``capacity``: notifications waiting to be sent; when full the oldest is dropped and
    counted. ``connect_timeout``/``socket_timeout``: seconds, for the sender and the listener.
    ``publish_timestamps``: add ``"ts"`` (ms) to each payload, for the lag histogram.
    ``signing``: a :class:`~notifier.signing.Keyring` to sign payloads with and verify
    received ones with (None: the unsigned wire of the reference). ``transport``: a
    :class:`~notifier.transport.RedisTransport` that makes every connection (default: one
    for ``url`` with these timeouts and ``tls``, a :class:`~notifier.tls.TLSConfig`).
    """

    requires_url = True
    COUNTERS = BaseNotifier.COUNTERS + (
        "mirrored", "mirror_failures", "mirror_dropped", "mirror_superseded", "resync_requests",
    )

    def __init__(
        self,
        url,
        *,
        channel=DEFAULT_CHANNEL,
        capacity=1000,
        instance_id=None,
        channel_layer=DEFAULT_CHANNEL_LAYER,
        connect_timeout=2.0,
        socket_timeout=2.0,
        publish_timestamps=True,
        signing=None,
        transport=None,
        tls=None,
    ):
        too_old = redis_py.below_floor()
        if too_old:
            raise InvalidNotifierConfiguration(too_old, check_id="notifier.E020")
        super().__init__(instance_id=instance_id, channel_layer=channel_layer)
        self.publish_timestamps = publish_timestamps
        self.signing = signing
        self.url = url
        self.channel = channel
        self.capacity = capacity
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        #: Every connection to Redis comes from here (see :mod:`notifier.transport`).
        self.transport = transport or transport_for_url(url, connect_timeout=connect_timeout,
                                                        socket_timeout=socket_timeout, tls=tls)
        self._async_sender = None
        self._thread_sender = None
        self._thread_sender_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, **overrides):
        options = {
            "channel": settings.channel,
            "capacity": settings.capacity,
            "instance_id": settings.instance_id,
            "signing": settings.signing,
            "tls": settings.tls,
        }
        return cls(settings.url, **{**options, **overrides})

    def __repr__(self):
        return (
            f"<{type(self).__name__} {mask_url(self.url)} channel={self.channel!r} "
            f"instance_id={self.instance_id}>"
        )

    def _sender_options(self):
        return {
            "capacity": self.capacity,
            "counters": self.counters,
            "resync_request": self.resync_request(),
        }

    def publish_failing(self):
        """See the base class: the sender (task or thread) that has failed the longest."""
        failing = [(sender.failing_since, sender.last_error)
                   for sender in (self._async_sender, self._thread_sender)
                   if sender is not None and sender.failing_since is not None]
        return min(failing, key=lambda pair: pair[0]) if failing else None

    def resync_request(self, reason="lost"):
        """The payload that asks our other replicas to resync (see :mod:`notifier.resync`)."""
        return encode_resync_request(self.instance_id, reason, self.signing)

    async def astart(self):
        """Bind to the running loop and start the sender task there (see the base class)."""
        await super().astart()
        sender = self._async_sender
        if sender is not None and sender.loop is self._loop and sender.running:
            return
        sender = AsyncSender(self.transport, self.channel, **self._sender_options())
        sender.start()
        self._async_sender = sender

    async def aclose(self):
        """Flush and stop the sender task (and the sender thread, if one was started)."""
        await super().aclose()
        sender, self._async_sender = self._async_sender, None
        if sender is not None and sender.loop is asyncio.get_running_loop():
            await sender.aclose()
        if self._thread_sender is not None:
            await asyncio.to_thread(self.close)

    def close(self):
        """Flush and stop the sender thread; the sender task is stopped by :meth:`aclose`."""
        with self._thread_sender_lock:
            sender, self._thread_sender = self._thread_sender, None
        if sender is not None:
            sender.close()

    def _mirror(self, event):
        try:
            payload = wire.encode(event, self.instance_id)
        except (TypeError, ValueError) as exc:
            self.counters.incr("mirror_failures")
            logger.debug("cannot encode %r for the backplane: %s", event, exc)
            return False
        ts = time.time_ns() // 1_000_000 if self.publish_timestamps else None
        if self.signing is not None:
            payload = self.signing.sign(payload, ts)
        elif ts is not None:
            payload = lag.stamp(payload, ts)
        # Keyed by conversation: while Redis fails, a newer bump replaces an older one.
        item = ((event.tenant_id, event.conversation_id), payload)
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        sender = self._async_sender
        if sender is not None and sender.running:
            if sender.loop is current:
                return sender.put_nowait(item)
            if sender.loop.is_running():
                try:
                    sender.loop.call_soon_threadsafe(sender.put_nowait, item)
                    return False
                except RuntimeError:  # the loop closed meanwhile
                    pass
        self._get_thread_sender().put_nowait(item)
        return False

    async def _relieve(self):
        sender = self._async_sender
        if sender is not None and sender.loop is asyncio.get_running_loop():
            await sender.relieve()

    def _get_thread_sender(self):
        with self._thread_sender_lock:
            if self._thread_sender is None:
                self._thread_sender = ThreadSender(self.transport, self.channel,
                                                   **self._sender_options())
            return self._thread_sender

    def flush(self, timeout=2.0):
        """Wait up to ``timeout`` s for the sender thread to send what sync publishes queued.

        For sync callers that exit right after publishing; returns whether it emptied.
        """
        sender = self._thread_sender
        return True if sender is None else sender.flush(timeout)

    def listener(self, *, observer=None, deliver=None, probe=True, resync=True, **kwargs):
        """Build a listener on this notifier's channel, with its companions, that drops this
        instance's echoes and delivers through :meth:`local_send` (or ``deliver``).

        ``probe``: give it a :class:`~notifier.probe.Probe` (True), a dict of Probe options,
        or none (False). ``resync``: give it a :class:`~notifier.resync.Resyncer` on this
        notifier's channel layer (True), a dict of Resyncer options, or none (False).
        """
        from ..listener import Listener
        from ..probe import Probe, probe_channel
        from ..resync import Resyncer

        kwargs.setdefault("signing", self.signing)
        if deliver is None:
            deliver, kwargs["deliver_nowait"] = self.local_send, self.local_send_nowait
        if resync:
            options = resync if isinstance(resync, dict) else {}
            kwargs["resyncer"] = Resyncer(self._channel_layer, **options)
        if probe:
            options = {"connect_timeout": self.connect_timeout,
                       **(probe if isinstance(probe, dict) else {})}
            kwargs["probe"] = Probe(self.transport, probe_channel(self.channel, self.instance_id),
                                    **options)
        return Listener(
            self.transport,
            channel=self.channel,
            instance_id=self.instance_id,
            deliver=deliver,
            observer=observer,
            connect_timeout=self.connect_timeout,
            **kwargs,
        )

    def verify(self, timeout=2.0):
        """Strict startup: prove that this process may SUBSCRIBE and PUBLISH on its channels
        (:func:`notifier.preflight.prove`); raise :class:`BackplaneUnavailable` (URL masked)
        within about ``timeout`` s, a :class:`~notifier.exceptions.BackplaneRefused` subclass
        when Redis refuses the password, the certificates or a permission.

        Runs in a daemon thread so that even a hanging DNS lookup cannot hold startup longer.
        """
        from ..preflight import prove

        outcome = {}

        def run():
            try:
                prove(self.transport, self.channel, timeout)
            except Exception as exc:
                outcome["error"] = exc
            else:
                outcome["ok"] = True

        thread = threading.Thread(target=run, name="notifier-verify", daemon=True)
        thread.start()
        thread.join(timeout + 0.2)
        if outcome.get("ok"):
            return
        error = outcome.get("error")
        if isinstance(error, BackplaneRefused):
            raise error
        reason = f"{type(error).__name__}: {error}" if error else f"no answer within {timeout:g} s"
        for password in _passwords(self.url):
            reason = reason.replace(password, "***")
        raise BackplaneUnavailable(
            f"The Redis backplane does not answer at {mask_url(self.url)} ({reason}). Start "
            "Redis there, or point WEBCHAT_NOTIFIER['URL'] (REDIS_URL) at one, or use "
            "WEBCHAT_NOTIFIER['BACKEND'] = 'memory'."
        )


def _passwords(url):
    try:
        if url.partition("://")[0].lower() in ("redis+sentinel", "rediss+sentinel"):
            from ..sentinel import parse_url

            parsed = parse_url(url)
            return [p for p in (parsed.password, parsed.sentinel_password) if p]
        if url.partition("://")[0].lower() in ("redis+cluster", "rediss+cluster"):
            from ..cluster import parse_url as parse_cluster_url

            return [p for p in (parse_cluster_url(url).password,) if p]
        password = redis.connection.parse_url(url).get("password")
        return [password] if password else []
    except Exception:
        return []
