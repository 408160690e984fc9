"""One backplane listener in the foreground: the engine behind ``run_backplane_listener``.

It re-dispatches the global channel into the configured channel layer. With a process-local
layer that reaches nobody else, so this is for a cross-process layer (channels_redis): one
such process bridges the reference's replicas to every consumer that layer serves.

Resync needs a layer that lists its groups. channels_redis cannot, so the bridge runs
without it: a notification published while the bridge was not subscribed reaches its
consumers only with the next one (see docs/notifier.md, "The bridge").
"""

import asyncio
import json
import logging
import signal

from .conf import mask_url
from .exceptions import BackplaneUnavailable
from .failures import explain
from .listener import ListenerObserver
from .resync import local_groups

logger = logging.getLogger(__name__)


class ConsoleObserver(ListenerObserver):
    """Writes one line per event to ``stream`` (a command's ``stdout``).

    Verbosity 1: connects and disconnects. Verbosity 2 adds one line per message:
    ``delivered tenant=... conversation=... watermark=N`` or ``dropped reason=<reason>``.
    """

    def __init__(self, stream, verbosity=1):
        self.stream = stream
        self.verbosity = verbosity

    def _line(self, text):
        self.stream.write(text)
        self.stream.flush()

    def connected(self, listener, after_attempts):
        if self.verbosity >= 1:
            what = f"reconnected after {after_attempts} attempt(s):" if after_attempts else \
                "connected:"
            self._line(f"{what} subscribed to {listener.channel!r} at {mask_url(listener.url)} "
                       f"as instance {listener.instance_id}")

    def disconnected(self, listener, error, delay):
        if self.verbosity >= 1:
            self._line(f"disconnected: {error}; reconnecting in {delay * 1000:.0f} ms "
                       f"(attempt {listener.attempt})")

    def delivered(self, listener, message):
        if self.verbosity >= 2:
            # JSON keeps ids with spaces, newlines or any unicode on one unambiguous line.
            tenant = json.dumps(message.tenant_id, ensure_ascii=False)
            conversation = json.dumps(message.conversation_id, ensure_ascii=False)
            self._line(f"delivered tenant={tenant} conversation={conversation} "
                       f"watermark={message.new_watermark} instance={message.instance_id}")

    def dropped(self, listener, reason, payload, error=None):
        if self.verbosity >= 2:
            detail = f" ({error})" if error else ""
            self._line(f"dropped reason={reason} bytes={len(payload)}{detail}")


class ListenerService:
    """Owns the event loop, the notifier's local side and one listener, until a signal.

    ``notifier``: a notifier with a transport (e.g. RedisNotifier), which gives the URL,
    channel and instance id. ``timeout``: seconds for the startup checks.
    """

    def __init__(self, notifier, *, observer=None, timeout=2.0):
        self.notifier = notifier
        self.timeout = timeout
        layer = notifier.channel_layer
        resync = layer is not None and local_groups(layer) is not None
        if not resync:
            logger.info("backplane listener: no resync into %r (it cannot list its groups)",
                        layer)
        self.listener = notifier.listener(observer=observer, resync=resync)
        if self.listener is None:
            raise ValueError(f"{notifier!r} has no transport to listen to")

    def verify(self):
        """Strict startup: raise :class:`BackplaneUnavailable` unless Redis answers."""
        self.notifier.verify(self.timeout)

    def check(self):
        """Connect and subscribe once, make one probe round trip through Redis (the proof
        readiness uses), then disconnect (``--check``). Returns the round trip in seconds;
        raises :class:`BackplaneUnavailable` naming the URL (password masked) on failure."""
        try:
            return asyncio.run(self.listener.check())
        except Exception as exc:
            explained = explain(exc, self.listener.url, command="SUBSCRIBE",
                                channels=self.listener.channels)
            if explained is not exc:
                raise explained from exc
            raise BackplaneUnavailable(
                f"Cannot subscribe to {self.listener.channel!r} at {mask_url(self.listener.url)}"
                f": {type(exc).__name__}: {exc}"
            ) from exc

    def run(self):
        """Run until SIGINT or SIGTERM, then stop cleanly and return."""
        asyncio.run(self.arun())

    async def arun(self):
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            loop.add_signal_handler(signum, stop.set)
        try:
            await self.notifier.astart()
            self.listener.start()
            await stop.wait()
            logger.info("backplane listener: signal received, stopping")
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            try:
                await self.listener.aclose()
            finally:
                await self.notifier.aclose()
