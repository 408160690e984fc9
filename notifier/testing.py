"""Helpers for your own project's tests, under Django's test runner.

* :func:`capture_changes`: what was published inside a ``with`` block.
* :func:`memory_backplane`, :func:`redis_backplane`: ``override_settings`` for tests on the
  in-process backend, or on a real Redis with a channel of their own.
* :func:`running_backplane`: start this process's listener for an async test and stop it
  after; :func:`apublish_as_peer`: publish through Redis as another server process would.

See docs/notifier.md, "Testing your consumers".
"""

import contextlib
import os
import threading
import uuid

from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from .backends.base import TAPS
from .conf import SETTING_NAME, get_settings
from .publishing import change

#: The process-local channel layer the backplane delivers on.
LOCAL_LAYERS = {"default": {"BACKEND": "notifier.layers.LocalChannelLayer"}}


class CapturedChanges(list):
    """The :class:`~notifier.events.Change` s published while capturing, in order."""

    def __init__(self):
        super().__init__()
        self._grown = threading.Condition()

    def _add(self, event):
        with self._grown:
            self.append(event)
            self._grown.notify_all()

    def wait(self, count, timeout=5.0):
        """Block until ``count`` changes were captured (a sync ``publish()`` on a running
        server loop arrives there a moment later); raise ``AssertionError`` on timeout."""
        with self._grown:
            if not self._grown.wait_for(lambda: len(self) >= count, timeout):
                raise AssertionError(f"{len(self)} change(s) published within {timeout} s, "
                                     f"expected {count}: {list(self)!r}")
        return self


@contextlib.contextmanager
def capture_changes():
    """Capture every change published in this process inside the block (every backend,
    every way of publishing). Use with ``captureOnCommitCallbacks(execute=True)`` in a
    ``TestCase``, where the ``changed`` signal's publish waits for a commit."""
    captured = CapturedChanges()
    TAPS.append(captured._add)
    try:
        yield captured
    finally:
        TAPS.remove(captured._add)


def memory_backplane():
    """``override_settings`` for the in-process backend on the process-local layer: fast,
    no Redis; consumers hear what this process publishes."""
    return override_settings(**{SETTING_NAME: {"BACKEND": "memory"}},
                             CHANNEL_LAYERS=LOCAL_LAYERS)


def redis_backplane(url=None, *, channel=None):
    """``override_settings`` for the Redis backend at ``url`` (default: ``REDIS_URL`` or
    ``redis://127.0.0.1:6379/0``) on a channel of its own (default: ``test:<uuid>``), so
    parallel test runs never hear each other."""
    url = url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    options = {"BACKEND": "redis", "URL": url, "CHANNEL": channel or f"test:{uuid.uuid4()}"}
    return override_settings(**{SETTING_NAME: options}, CHANNEL_LAYERS=LOCAL_LAYERS)


@contextlib.asynccontextmanager
async def running_backplane(timeout=5.0):
    """In an async test: start this process's backplane on the test's loop, wait until its
    listener is subscribed (Redis backend), and stop it at the end of the block."""
    from .runtime import get_runtime

    runtime = get_runtime()
    await runtime.astart()
    try:
        if runtime.listener is not None:
            await runtime.listener.wait_connected(timeout)
        yield runtime.notifier
    finally:
        await runtime.aclose()


async def apublish_as_peer(namespace, key, version):
    """Publish a change through Redis as another server process: only this process's
    listener can deliver it to the consumers here (the Redis backend must be configured).
    :func:`capture_changes` sees it too."""
    settings = get_settings()
    if not settings.backend_class.requires_url:
        raise ImproperlyConfigured(
            f"apublish_as_peer() needs the Redis backend; {settings.name} uses "
            f"{settings.backend!r} (use redis_backplane())."
        )
    peer = settings.backend_class.from_settings(
        settings, instance_id=uuid.uuid4(), channel_layer=None
    )
    await peer.astart()
    try:
        await peer.apublish(change(namespace, key, version))
    finally:
        await peer.aclose()

