"""The process's notifier and, with the Redis backend, its one listener.

:func:`get_notifier` is what publishers call. Under daphne (no ASGI lifespan) the ASGI
wrapper calls :meth:`Runtime.astart` on every connection; only the first does anything:
it binds the notifier to daphne's loop and starts the listener there, once per process.
Shutdown cancels and awaits both, from a Twisted "before shutdown" trigger under daphne, from
the lifespan shutdown event under servers that have one, and at exit otherwise.

When a test overrides ``WEBCHAT_NOTIFIER`` (or the settings its URL may come from), the
runtime is replaced; the old one is closed on its loop if that still runs.

The runtime belongs to the process that built it. A server that imports the application in
a parent and forks workers (``gunicorn --preload``, ``uvicorn --workers``) built it in the
parent: each forked child forgets it (and the settings snapshot that holds the instance id)
and builds its own, with its own instance id, connections, sender and listener.
"""

import asyncio
import atexit
import logging
import os
import sys
import threading

from django.core.signals import setting_changed
from django.dispatch import receiver

from . import conf
from .compat import twisted
from .conf import WATCHED_SETTINGS, get_settings

logger = logging.getLogger(__name__)


class Runtime:
    """Owns one notifier and at most one running listener, both on one event loop."""

    def __init__(self, notifier):
        self.notifier = notifier
        #: The running listener (``None`` before start and with a local-only backend).
        self.listener = None
        self._loop = None
        self._closing_tasks = set()

    def __repr__(self):
        return f"<Runtime {self.notifier!r} listener={self.listener!r}>"

    @property
    def loop(self):
        return self._loop

    async def astart(self):
        """Called on each ASGI call (cheap after the first): start the runtime on this loop.

        Once per process: a runtime already started on another loop that still runs is left
        alone. A loop that stopped (a finished test's) took its tasks with it, so the next
        loop starts afresh.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop or (self._loop is not None and self._loop.is_running()):
            return
        # Claimed before the first await, so concurrent first calls start exactly once.
        self._loop = loop
        await self.notifier.astart()
        self.listener = self.notifier.listener()
        if self.listener is not None:
            self.listener.start()
        _register_shutdown(self, loop)

    async def aclose(self):
        """Called at shutdown on the runtime's loop: stop the listener, flush the notifier."""
        if self._loop is not asyncio.get_running_loop():
            return
        listener, self.listener = self.listener, None
        try:
            if listener is not None:
                await listener.aclose()
        finally:
            await self.notifier.aclose()
            self._loop = None

    def close_soon(self):
        """Called from sync code (settings reset, exit): close on the runtime's loop if it
        still runs, else release what needs no loop."""
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(self._spawn_aclose)
                return
            except RuntimeError:  # closed meanwhile
                pass
        self.notifier.close()

    def _spawn_aclose(self):
        task = asyncio.get_running_loop().create_task(self.aclose())
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)


_lock = threading.Lock()
_runtime = None


def get_runtime():
    """Return the process's :class:`Runtime`, building its notifier from settings on first
    use (raises ``ImproperlyConfigured`` for invalid settings)."""
    global _runtime
    runtime = _runtime
    if runtime is None:
        with _lock:
            if _runtime is None:
                settings = get_settings()
                _runtime = Runtime(settings.backend_class.from_settings(settings))
            runtime = _runtime
    return runtime


def get_notifier():
    """Return the process's notifier: what signal receivers, views and consumers publish to."""
    return get_runtime().notifier


def reset_runtime():
    """Forget the process's runtime (closing it); the next :func:`get_runtime` builds anew."""
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close_soon()


def _forget_after_fork():
    # In the child: the parent's runtime, its loop, threads and sockets are not ours. Nothing
    # of it is closed here (that would close the parent's connections): it is dropped.
    global _lock, _runtime
    _lock = threading.Lock()
    _runtime = None
    conf.reset_settings(setting=conf.SETTING_NAME)


os.register_at_fork(after_in_child=_forget_after_fork)


@receiver(setting_changed)
def _reset_on_setting_changed(*, setting, **kwargs):
    if setting in WATCHED_SETTINGS:
        reset_runtime()


def _register_shutdown(runtime, loop):
    # daphne runs the ASGI app on the loop of Twisted's asyncio reactor and has no lifespan:
    # a "before shutdown" trigger that returns a Deferred makes the reactor wait for aclose().
    # Only look at a reactor someone already installed: importing one here would install the
    # default reactor in processes that have none.
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None and twisted.reactor_drives(reactor, loop):
        from twisted.internet.defer import Deferred

        def before_shutdown():
            if _runtime_for_loop(runtime, loop):
                return Deferred.fromFuture(loop.create_task(runtime.aclose()))
            return None

        reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
        logger.info("backplane runtime: stops before Twisted's reactor shuts down")


def _runtime_for_loop(runtime, loop):
    return runtime.loop is loop and not loop.is_closed()


@atexit.register
def _close_at_exit():
    # Last resort for servers without a shutdown hook: run aclose() on the runtime's loop if
    # it is stopped but not closed, else stop what runs without one (the sender thread).
    runtime = _runtime
    if runtime is None:
        return
    loop = runtime.loop
    if loop is not None and not loop.is_closed() and not loop.is_running():
        try:
            loop.run_until_complete(asyncio.wait_for(runtime.aclose(), 3.0))
            return
        except Exception:
            logger.debug("closing the notifier runtime at exit failed", exc_info=True)
    runtime.notifier.close()
