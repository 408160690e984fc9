"""The notifier interface: publish a watermark bump to this process's consumers and beyond.

A notifier always delivers locally first: ``group_send`` of the ``webchat.watermark`` message
to the conversation's group on the process's channel layer. Backends add what happens next
(:meth:`BaseNotifier._mirror`): nothing for memory, a wire v1 PUBLISH for Redis.

Publishing works from three places, and the local send always runs on the event loop that
owns the consumers (a channel layer is not thread-safe):

* async code: ``await notifier.apublish(event)``;
* sync code in a thread while the owner loop runs (a sync view under daphne, an
  ``on_commit`` callback): ``notifier.publish(event)`` hops onto that loop and returns;
* sync code with no such loop (management command, shell, WSGI worker): ``publish()`` runs
  the local send on a private loop and the backend still reaches Redis.
"""

import asyncio
import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, get_channel_layer

from ..events import group_name, watermark_message
from ..layers import LocalChannelLayer
from ..stats import Counters

logger = logging.getLogger(__name__)

#: Callables given every published event, in the publishing thread (see notifier.testing).
TAPS = []


class BaseNotifier:
    """Publishes :class:`~notifier.events.NotifyEvent` s; subclasses add a transport.

    ``instance_id`` identifies this process on the wire (a fresh UUID by default);
    ``channel_layer`` is the alias of the layer local consumers listen on, or a layer object.
    """

    #: Whether ``WEBCHAT_NOTIFIER["URL"]`` must resolve to a Redis URL (system check E002).
    requires_url = False

    #: Counter names; subclasses extend the tuple.
    COUNTERS = ("published", "local_failures")

    def __init__(self, *, instance_id=None, channel_layer=DEFAULT_CHANNEL_LAYER):
        if instance_id is None:
            instance_id = uuid.uuid4()
        elif not isinstance(instance_id, uuid.UUID):
            instance_id = uuid.UUID(str(instance_id))
        self.instance_id = instance_id
        self._channel_layer = channel_layer
        self.counters = Counters(*self.COUNTERS)
        self._loop = None
        # Publishes scheduled on a loop by publish(); kept so they are not garbage collected
        # mid-flight and so aclose() can wait for them.
        self._pending = set()

    @classmethod
    def from_settings(cls, settings, **overrides):
        """Build the notifier from a :class:`notifier.conf.NotifierSettings` snapshot."""
        return cls(**{"instance_id": settings.instance_id, **overrides})

    def __repr__(self):
        return f"<{type(self).__name__} instance_id={self.instance_id}>"

    @property
    def loop(self):
        """The loop bound by :meth:`astart` (the one that runs the consumers), or ``None``."""
        return self._loop

    @property
    def channel_layer(self):
        """The channel layer local consumers listen on (``None`` when none is configured)."""
        if isinstance(self._channel_layer, str):
            return get_channel_layer(self._channel_layer)
        return self._channel_layer

    async def astart(self):
        """Called once by the owner (the ASGI runtime, the listener command) on the loop that
        runs the consumers: sync publishers from other threads will hop onto it."""
        self._loop = asyncio.get_running_loop()

    async def aclose(self):
        """Called by the owner at shutdown, on the same loop: waits for publishes in flight."""
        loop = asyncio.get_running_loop()
        pending = [task for task in self._pending if task.get_loop() is loop]
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        if self._loop is loop:
            self._loop = None

    def close(self):
        """Release what can be released without a loop (processes that never ran one)."""

    def stats(self):
        """Counters as a dict; readable from any thread."""
        return self.counters.snapshot()

    def publish_failing(self):
        """``(since, error)`` when every PUBLISH to the transport has failed since
        ``time.monotonic()`` value ``since`` (``error``: the last failure), else None."""
        return None

    async def apublish(self, event):
        """Deliver ``event`` to local consumers, then hand it to the backend. Never raises."""
        self.counters.incr("published")
        if TAPS:
            for tap in TAPS:
                tap(event)
        await self.local_send(event)
        if self._mirror(event):
            await self._relieve()

    async def local_send(self, event):
        """Group-send ``event`` on this process's channel layer; also the listener's delivery.

        Failures are logged and counted, not raised: a publish happens after a commit, when
        nobody can act on an error.
        """
        layer = self.channel_layer
        if layer is None:
            return
        try:
            await layer.group_send(
                group_name(event.tenant_id, event.conversation_id), watermark_message(event)
            )
        except Exception:
            self.counters.incr("local_failures")
            logger.warning("local group_send of %r failed", event, exc_info=True)

    def local_send_nowait(self, event):
        """:meth:`local_send` without awaiting, when the channel layer allows it (a
        :class:`~notifier.layers.LocalChannelLayer`, whose group send never waits). Returns
        False, having done nothing, for any other layer: the caller awaits
        :meth:`local_send` instead. Called on the layer's loop by the listener, per message.
        """
        layer = self._channel_layer
        if isinstance(layer, str):
            layer = get_channel_layer(layer)
        if layer is None:
            return True  # nothing to do, as local_send does
        # Only while group_send is ours (a subclass that overrides it must be awaited).
        if type(layer).group_send is not LocalChannelLayer.group_send:
            return False
        try:
            layer.group_send_nowait(
                group_name(event.tenant_id, event.conversation_id), watermark_message(event)
            )
        except Exception:
            self.counters.incr("local_failures")
            logger.warning("local group_send of %r failed", event, exc_info=True)
        return True

    def publish(self, event):
        """Publish from sync code; returns at once and never raises.

        On a thread that runs an event loop (a sync callback on the loop) the publish is
        scheduled there. Else, while the owner loop runs, it hops onto that loop. Else it
        runs on a private loop via ``async_to_sync`` (which also finds the loop of a
        ``sync_to_async`` caller), a local send that waits on nothing but the layer.
        """
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is not None:
            self._schedule(event)
            return
        home = self._loop
        if home is not None and home.is_running():
            try:
                home.call_soon_threadsafe(self._schedule, event)
                return
            except RuntimeError:  # closed between the check and the call
                pass
        try:
            async_to_sync(self.apublish)(event)
        except Exception:
            logger.warning("publish of %r failed", event, exc_info=True)

    def _schedule(self, event):
        # Runs on a loop thread: the task is tracked until done, errors are logged by apublish.
        task = asyncio.get_running_loop().create_task(self.apublish(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _mirror(self, event):
        """Hook run right after the local send, on the publisher's loop: pass ``event`` on to
        other processes. Must neither block nor raise. Returns whether an async publisher
        should yield once to let the backend's sender catch up. The base class does nothing."""
        return False

    async def _relieve(self):
        """Called by :meth:`apublish` when :meth:`_mirror` returned True: give the backend's
        sender a chance to catch up (a few milliseconds at most)."""
        await asyncio.sleep(0)

    def listener(self, **kwargs):
        """Return a :class:`~notifier.listener.Listener` fed by this backend's transport, or
        ``None`` when other processes cannot publish to this one (memory)."""
        return None

    def verify(self, timeout=2.0):
        """Strict startup, called before a process serves: raise
        :class:`~notifier.exceptions.BackplaneUnavailable` when the transport does not answer
        within ``timeout`` seconds. Nothing to check for a local-only backend."""
