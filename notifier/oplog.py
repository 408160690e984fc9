"""The operators' log: the seed spec's events under the logger ``notifier_redis``.

Runbooks grep for these event names, so each record's message starts with the name, followed
by ``key=value`` fields (values with spaces are JSON-quoted); the record also carries
``record.event`` and ``record.fields`` for structured handlers. Each event is rate-limited
on its own: at most one record per :data:`INTERVAL` seconds, and the next record says how
many were left out (``suppressed=N``).

====================== ======== ==========================================================
event                  level    when
====================== ======== ==========================================================
redis_publish_dropped  WARNING  a PUBLISH round trip failed (its notifications wait to be
                                re-sent: ``retrying``) or notifications were given up
                                (``given_up``)
redis_decode_err       WARNING  a payload on the global channel is not wire v1
redis_bad_signature    WARNING  a payload or resync request is unsigned or forged (signed
                                wire only)
redis_unknown_version  WARNING  a wire message of a version this listener does not deliver
redis_disconnected     WARNING  the subscriber connection was lost
redis_reconnect_fail   WARNING  a connection attempt failed (counted:
                                ``webchat_backplane_reconnect_failures_total``)
redis_reconnect_ok     INFO     subscribed again after a loss or failed attempts
redis_degraded         WARNING  readiness reports the backplane degraded: Redis trouble
                                every replica shares (README "Health, readiness and
                                metrics"); logged while it lasts, as readiness is checked
====================== ======== ==========================================================
"""

import json
import logging
import threading
import time

LOGGER_NAME = "notifier_redis"

logger = logging.getLogger(LOGGER_NAME)

#: Seconds between two records of the same event.
INTERVAL = 10.0

PUBLISH_DROPPED = "redis_publish_dropped"
DECODE_ERR = "redis_decode_err"
UNKNOWN_VERSION = "redis_unknown_version"
DISCONNECTED = "redis_disconnected"
RECONNECT_OK = "redis_reconnect_ok"
RECONNECT_FAIL = "redis_reconnect_fail"
DEGRADED = "redis_degraded"
BAD_SIGNATURE = "redis_bad_signature"


class RateLimiter:
    """At most one pass per key per ``interval`` seconds; counts what it refused."""

    def __init__(self, interval=INTERVAL, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._state = {}  # key -> [last pass, refused since]

    def allow(self, key):
        """Return ``(allowed, refused since the last pass)``."""
        now = self.clock()
        with self._lock:
            state = self._state.get(key)
            if state is None:
                self._state[key] = [now, 0]
                return True, 0
            if now - state[0] >= self.interval:
                refused, state[0], state[1] = state[1], now, 0
                return True, refused
            state[1] += 1
            return False, state[1]


_limiter = RateLimiter()
# For the other per-message log lines (limited): a flood must not flood the log.
_lines = RateLimiter()


def _text(value):
    text = str(value)
    if not text or any(char.isspace() or char in '"=' for char in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def emit(event, level=logging.WARNING, **fields):
    """Log ``event`` with ``fields`` unless the event was logged within :data:`INTERVAL`."""
    if not logger.isEnabledFor(level):
        return
    allowed, suppressed = _limiter.allow(event)
    if not allowed:
        return
    if suppressed:
        fields["suppressed"] = suppressed
    text = " ".join(f"{key}={_text(value)}" for key, value in fields.items() if value is not None)
    logger.log(level, "%s %s", event, text, extra={"event": event, "fields": fields})


def limited(log, key, level, message, *args, exc_info=False):
    """``log.log(level, message, *args)`` at most once per :data:`INTERVAL` for ``key``
    (the next line says how many were left out). For log lines a message from the channel
    causes: however many arrive, the log stays bounded."""
    if not log.isEnabledFor(level):
        return
    allowed, suppressed = _lines.allow(key)
    if not allowed:
        return
    if suppressed:
        message += " (%d more like it not logged)"
        args = (*args, suppressed)
    log.log(level, message, *args, exc_info=exc_info)


def error_text(error):
    """``"TypeError: message"`` for a log field."""
    return f"{type(error).__name__}: {error}"


# The call sites: one line each where the backplane notices the event.

def publish_dropped(url, *, retrying=0, given_up=0, error=None):
    """A PUBLISH round trip failed, or notifications were given up (``url`` masked)."""
    emit(PUBLISH_DROPPED, url=url, retrying=retrying or None, given_up=given_up or None,
         error=None if error is None else error_text(error))


def payload_dropped(reason, payload, error=None):
    """The listener dropped ``payload``: decode errors, unknown versions and bad signatures
    are logged (a self-echo is routine)."""
    if reason == "malformed":
        emit(DECODE_ERR, bytes=len(payload), error=error)
    elif reason == "unknown_version":
        emit(UNKNOWN_VERSION, bytes=len(payload))
    elif reason == "bad_signature":
        emit(BAD_SIGNATURE, bytes=len(payload), error=error)


def connection_lost(url, error, *, was_connected, attempt, delay):
    """The listener's connection broke (``was_connected``) or an attempt failed."""
    emit(DISCONNECTED if was_connected else RECONNECT_FAIL, url=url, attempt=attempt,
         retry_in_ms=round(delay * 1000), error=error_text(error))


def reconnected(url, after_attempts):
    """The listener subscribed again after ``after_attempts`` failed attempts."""
    emit(RECONNECT_OK, logging.INFO, url=url, after_attempts=after_attempts)


def backplane_degraded(reason):
    """Readiness found the backplane degraded (``reason`` names no secret: URLs are masked)."""
    emit(DEGRADED, reason=reason)
