"""Is the backplane working? One answer for ``/readyz`` and for the metrics.

With a local-only backend (memory) there is nothing to fail. With the Redis backend the
process can serve its sockets only when its listener is subscribed AND messages actually
flow, which only a round trip proves (:mod:`notifier.probe`): a subscriber socket can be
open while nothing arrives. It must also reach the others: readiness fails once every
PUBLISH of the sender has failed for :data:`PUBLISH_FAILING_AFTER` seconds.
"""

import asyncio
import time

from .backends.base import BaseNotifier
from .runtime import get_runtime

#: Seconds ``wait_until_ready`` may wait for a listener's first round trip.
STARTUP_WAIT = 2.0

#: Seconds every PUBLISH of the sender may fail before the backplane is not ready: as long as
#: a probe may go stale (notifier.probe.STALE), so one failed retry does not flap readiness.
PUBLISH_FAILING_AFTER = 3.0


def has_transport(notifier):
    """Whether ``notifier`` talks to other processes (it has a listener to watch)."""
    return type(notifier).listener is not BaseNotifier.listener


def backplane_status(runtime=None):
    """Return ``{"ok": bool, "reason": str (when not ok), ...details}`` for this process.

    Cheap and non-blocking (it reads state the listener and probe keep); call it from the
    event loop or any thread.
    """
    runtime = runtime or get_runtime()
    notifier = runtime.notifier
    backend = type(notifier).__name__
    if not has_transport(notifier):
        return {"ok": True, "backend": backend, "detail": "local delivery only"}
    listener = runtime.listener
    if listener is None:
        return {"ok": False, "backend": backend,
                "reason": "the backplane listener has not started"}
    status = {"backend": backend, "channel": listener.channel, "listener": listener.state,
              "attempt": listener.attempt}
    probe = listener.probe
    if probe is not None:
        status["probe"] = probe.status()
    duplicate = probe.duplicate() if probe is not None else None
    if duplicate is not None:
        return {**status, "ok": False, "reason": duplicate}
    if not listener.connected:
        error = listener.last_error
        detail = f": {type(error).__name__}: {error}" if error is not None else ""
        return {**status, "ok": False,
                "reason": f"backplane listener {listener.state} (attempt {listener.attempt})"
                          f"{detail}"}
    if probe is not None and not probe.healthy():
        age = status["probe"]["since_last_round_trip_s"]
        error = status["probe"]["last_error"]
        if age is None:
            reason = "no probe has made a round trip through Redis yet"
        else:
            reason = f"no probe round trip through Redis for {age:.1f} s"
        if error:
            reason += f" (last PUBLISH: {error})"
        return {**status, "ok": False, "reason": reason}
    failing = notifier.publish_failing()
    if failing is not None and time.monotonic() - failing[0] >= PUBLISH_FAILING_AFTER:
        since, error = failing
        return {**status, "ok": False,
                "reason": f"every PUBLISH has failed for {time.monotonic() - since:.1f} s "
                          f"(last: {type(error).__name__}: {error})"}
    return {**status, "ok": True}


def starting(runtime):
    """Whether the listener has not yet had its first chance to prove itself."""
    listener = runtime.listener
    if listener is None or not has_transport(runtime.notifier):
        return False
    probe = listener.probe
    if probe is None:
        return listener.counters["connects"] == 0 and listener.attempt == 0
    return probe.last_ok is None and listener.attempt == 0 and probe.counters[
        "publish_failures"] == 0


async def wait_until_ready(runtime=None, timeout=STARTUP_WAIT):
    """Return :func:`backplane_status`, first waiting up to ``timeout`` s while the listener
    is starting (so the first readiness check of a fresh process is not a needless no)."""
    runtime = runtime or get_runtime()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    status = backplane_status(runtime)
    while not status["ok"] and starting(runtime) and loop.time() < deadline:
        await asyncio.sleep(0.02)
        status = backplane_status(runtime)
    return status
