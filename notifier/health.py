"""Is the backplane working? One answer for ``/readyz`` and for the metrics.

With a local-only backend (memory) there is nothing to fail. With the Redis backend the
listener must be subscribed AND hear the channel, which only a round trip proves
(:mod:`notifier.probe`), and the sender must reach the others.

Readiness means "send traffic here". Each problem is classed (README "Health, readiness
and metrics"):

* *shared*, ``degraded``: Redis does not answer this process, or it keeps closing its
  subscriber connection (a restart, ``CLIENT KILL``, a flood over the pub/sub output buffer
  limit). Every replica sees the same, and each still serves its own sockets, REST and the
  database, with the catch-up sweep closing cross-replica gaps: draining one for another
  gains nothing.
* *local*, ``unready``: this replica is worse off than its peers: Redis answers its PUBLISHes
  but its subscriber goes silent (wedged), its sender's PUBLISHes fail while Redis answers
  its probe, Redis refuses it (credentials, TLS, ACL: a deployment's mistake, never to be
  served through), or another process uses its instance id.

``BACKPLANE["READINESS"] = "strict"`` makes every problem local. Either way a problem must
last ``UNREADY_AFTER`` seconds before it shows (one reconnect is no outage), and a red or
degraded answer needs ``READY_AFTER`` seconds of health to turn green again
(:class:`Hysteresis`).
"""

import asyncio
import threading
import time
import weakref
from dataclasses import dataclass

from redis.exceptions import TimeoutError as RedisTimeoutError

from . import oplog
from .backends.base import BaseNotifier
from .conf import get_settings
from .exceptions import BackplaneRefused
from .runtime import get_runtime

#: How a silent subscriber connection ends (ProbeOverdue is a TimeoutError).
SILENCE = (TimeoutError, RedisTimeoutError)

#: Seconds ``wait_until_ready`` may wait for a listener's first round trip.
STARTUP_WAIT = 2.0

#: The states :func:`backplane_status` reports (``"state"``).
OK = "ok"
DEGRADED = "degraded"
UNREADY = "unready"

STRICT = "strict"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong: ``level`` (DEGRADED or UNREADY), why, and since when
    (``time.monotonic()``; None: since it was first seen)."""

    level: str
    reason: str
    since: float | None = None


class Hysteresis:
    """A yes/no verdict that changes only once its new value has held for a while.

    ``update(bad, since)`` turns bad once the condition has lasted ``bad_after`` seconds
    (from ``since`` when the caller knows when it began, else from the first ``update`` that
    saw it) and good again once ``update`` has seen it healthy for ``good_after`` seconds.
    Until the first healthy ``update`` it answers the raw value: a process that was never
    ready has nothing to hold on to. Thread-safe.
    """

    def __init__(self, bad_after, good_after, clock=time.monotonic):
        self.bad_after = bad_after
        self.good_after = good_after
        self.clock = clock
        self.bad = False
        self._seen_healthy = False
        self._bad_since = None
        self._good_since = None
        self._lock = threading.Lock()

    def update(self, bad, since=None):
        """Feed the current raw verdict; return the held one (True: bad)."""
        now = self.clock()
        with self._lock:
            if bad:
                self._good_since = None
                if self._bad_since is None:
                    self._bad_since = now
                if since is not None:
                    self._bad_since = min(self._bad_since, since)
                if not self._seen_healthy or now - self._bad_since >= self.bad_after:
                    self.bad = True
            else:
                self._bad_since = None
                if self._good_since is None:
                    self._good_since = now
                if not self._seen_healthy or now - self._good_since >= self.good_after:
                    self.bad = False
                self._seen_healthy = True
            return self.bad

    def healthy_for(self):
        """Seconds the raw verdict has been healthy (None while it is not)."""
        since = self._good_since
        return None if since is None else self.clock() - since


class _Gate:
    """The held verdicts of one listener: unready, and troubled (degraded or worse)."""

    def __init__(self, unready_after, ready_after):
        self.delays = (unready_after, ready_after)
        self.unready = Hysteresis(unready_after, ready_after)
        self.troubled = Hysteresis(unready_after, ready_after)
        self.last_unready = None
        self.last_degraded = None


_gates = weakref.WeakKeyDictionary()  # listener -> _Gate
_gates_lock = threading.Lock()


def _gate(listener, delays):
    with _gates_lock:
        gate = _gates.get(listener)
        if gate is None or gate.delays != delays:
            gate = _gates[listener] = _Gate(*delays)
        return gate


def has_transport(notifier):
    """Whether ``notifier`` talks to other processes (it has a listener to watch)."""
    return type(notifier).listener is not BaseNotifier.listener


def problems(listener, notifier, now=None):
    """What is wrong with the backplane of this process right now: a list of
    :class:`Problem`, each classed shared (DEGRADED) or local (UNREADY)."""
    now = time.monotonic() if now is None else now
    found = []
    probe = listener.probe
    duplicate = probe.duplicate() if probe is not None else None
    if duplicate is not None:
        found.append(Problem(UNREADY, duplicate, float("-inf")))
    # Redis accepted our last probe PUBLISH: it answers this process.
    answering = probe.answering() if probe is not None else listener.connected
    if not listener.connected:
        error = listener.last_error
        detail = f": {type(error).__name__}: {error}" if error is not None else ""
        reason = f"backplane listener {listener.state} (attempt {listener.attempt}){detail}"
        since = listener.down_since
    elif probe is not None and not probe.healthy():
        if probe.last_ok is None:
            reason = "no probe has made a round trip through Redis yet"
            since = probe.started_at
        else:
            reason = f"no probe round trip through Redis for {now - probe.last_ok:.1f} s"
            since = probe.last_ok
        if probe.last_error is not None:
            reason += f" (last PUBLISH: {type(probe.last_error).__name__}: {probe.last_error})"
    else:
        reason = None
    if reason is not None:
        # Silence on the subscriber connection (a probe that did not come back, no answer to
        # PING or SUBSCRIBE) while Redis answers our PUBLISHes: our subscriber, not Redis.
        # Redis closing connections, or not answering at all, is what every replica sees.
        # A refusal (credentials, TLS, ACL) is this deployment's to fix: never "degraded".
        loss = listener.last_loss
        wedged = answering and isinstance(loss, SILENCE)
        refused = isinstance(loss, BackplaneRefused) or isinstance(
            getattr(probe, "last_error", None), BackplaneRefused)
        if wedged:
            reason += ("; Redis answers this process's PUBLISHes but its subscriber "
                       "connection went silent")
        found.append(Problem(UNREADY if wedged or refused else DEGRADED, reason, since))
    failing = notifier.publish_failing()
    if failing is not None:
        since, error = failing
        reason = (f"every PUBLISH has failed for {now - since:.1f} s "
                  f"(last: {type(error).__name__}: {error})")
        if answering:
            reason += " while Redis answers the probe"
        local = answering or isinstance(error, BackplaneRefused)
        found.append(Problem(UNREADY if local else DEGRADED, reason, since))
    return found


def backplane_status(runtime=None):
    """Return ``{"ok": bool, "state": "ok" | "degraded" | "unready", "reason": str (when
    not ok), "degraded": str (when degraded), ...details}`` for this process.

    Cheap and non-blocking (it reads state the listener and probe keep); call it from the
    event loop or any thread.
    """
    runtime = runtime or get_runtime()
    notifier = runtime.notifier
    backend = type(notifier).__name__
    if not has_transport(notifier):
        return {"ok": True, "state": OK, "backend": backend, "detail": "local delivery only"}
    listener = runtime.listener
    if listener is None:
        return {"ok": False, "state": UNREADY, "backend": backend,
                "reason": "the backplane listener has not started"}
    status = {"backend": backend, "channel": listener.channel, "listener": listener.state,
              "attempt": listener.attempt}
    if listener.probe is not None:
        status["probe"] = listener.probe.status()
    settings = get_settings()
    found = problems(listener, notifier)
    if settings.readiness == STRICT:
        found = [Problem(UNREADY, p.reason, p.since) for p in found]
    gate = _gate(listener, settings.readiness_delays)
    local = [p for p in found if p.level == UNREADY]
    if local:
        gate.last_unready = local[0].reason
    if found:
        gate.last_degraded = found[0].reason
    unready = gate.unready.update(bool(local), _earliest(local))
    troubled = gate.troubled.update(bool(found), _earliest(found))
    if unready:
        reason = local[0].reason if local else _recovering(gate.unready, gate.last_unready)
        return {**status, "ok": False, "state": UNREADY, "reason": reason}
    if troubled:
        reason = found[0].reason if found else _recovering(gate.troubled, gate.last_degraded)
        if not starting(runtime):
            oplog.backplane_degraded(reason)
        return {**status, "ok": True, "state": DEGRADED, "degraded": reason}
    if found:
        # Not (yet) for long enough to count: shown to the monitor, not acted on.
        status["pending"] = found[0].reason
    return {**status, "ok": True, "state": OK}


def _earliest(found):
    times = [p.since for p in found if p.since is not None]
    return min(times) if times else None


def _recovering(hysteresis, was):
    healthy = hysteresis.healthy_for() or 0.0
    return (f"recovering: healthy for {healthy:.1f} s of the {hysteresis.good_after:g} s "
            f"required (was: {was})")


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
    while status["state"] != OK and starting(runtime) and loop.time() < deadline:
        await asyncio.sleep(0.02)
        status = backplane_status(runtime)
    return status
