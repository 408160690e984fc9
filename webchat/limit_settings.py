"""Rate limits and the upload quota: one optional dict, ``settings.WEBCHAT_LIMITS``, read lazily.

::

    WEBCHAT_LIMITS = {
        "ENABLED": True,          # False: no rate limit at all (the quota still holds)
        "BACKEND": "auto",        # "auto": Redis when the notifier's backend is Redis, else
                                  # this process; or "memory", or "redis"
        "REDIS_URL": None,        # None: the notifier's Redis URL
        "KEY_PREFIX": "webchat:rate",
        "REDIS_TIMEOUT": 0.5,     # seconds a hit waits for Redis before falling back
        "REDIS_RETRY": 5,         # seconds on this replica's limits after a Redis error
        # (count, seconds) or None for no limit; see README "Limits and quotas"
        "POSTS_PER_TOKEN": (20, 10), "POSTS_PER_IP": (120, 10), "POSTS_PER_TENANT": (3000, 10),
        "UPLOADS_PER_TOKEN": (10, 60), "UPLOADS_PER_IP": (30, 60),
        "UPLOADS_PER_TENANT": (600, 60),
        "CONVERSATIONS_PER_IP": (100, 10), "CONVERSATIONS_PER_TENANT": (100, 10),
        "SOCKETS_PER_TOKEN": (10, 60), "SOCKETS_PER_IP": (60, 60),
        "SOCKETS_PER_TENANT": (1000, 60),
        "UPLOAD_QUOTA_BYTES": 1 << 30,   # stored upload bytes per tenant; None: no quota
    }

Nothing is read at import time: :func:`limit_settings` builds a snapshot on first use and
drops it when a test changes one of :data:`WATCHED_SETTINGS`. A bad value raises
ImproperlyConfigured naming the key; the system check ``webchat.E040`` reports the same.
"""

import threading
from dataclasses import dataclass

from django.conf import settings
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .ratelimit import Rate

SETTING_NAME = "WEBCHAT_LIMITS"
WATCHED_SETTINGS = frozenset({SETTING_NAME, "WEBCHAT_NOTIFIER", "CHANNEL_LAYERS", "CACHES"})

#: The rate-limited actions and the scopes each is limited by.
ACTIONS = {
    "posts": ("token", "ip", "tenant"),
    "uploads": ("token", "ip", "tenant"),
    "conversations": ("ip", "tenant"),
    "sockets": ("token", "ip", "tenant"),
}

RATE_DEFAULTS = {
    "POSTS_PER_TOKEN": (20, 10),
    "POSTS_PER_IP": (120, 10),
    "POSTS_PER_TENANT": (3000, 10),
    "UPLOADS_PER_TOKEN": (10, 60),
    "UPLOADS_PER_IP": (30, 60),
    "UPLOADS_PER_TENANT": (600, 60),
    "CONVERSATIONS_PER_IP": (100, 10),
    "CONVERSATIONS_PER_TENANT": (100, 10),
    "SOCKETS_PER_TOKEN": (10, 60),
    "SOCKETS_PER_IP": (60, 60),
    "SOCKETS_PER_TENANT": (1000, 60),
}
OPTION_DEFAULTS = {
    "ENABLED": True,
    "BACKEND": "auto",
    "REDIS_URL": None,
    "KEY_PREFIX": "webchat:rate",
    "REDIS_TIMEOUT": 0.5,
    "REDIS_RETRY": 5.0,
    "UPLOAD_QUOTA_BYTES": 1 << 30,
}
DEFAULTS = {**OPTION_DEFAULTS, **RATE_DEFAULTS}
BACKENDS = ("auto", "memory", "redis")
REDIS_NOTIFIER = "notifier.backends.redis.RedisNotifier"


def _setting_key(action: str, scope: str) -> str:
    return f"{action.upper()}_PER_{scope.upper()}"


def _error(message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{SETTING_NAME}: {message} (check webchat.E040)")


@dataclass(frozen=True)
class LimitSettings:
    BACKEND: str
    REDIS_URL: str | None
    KEY_PREFIX: str
    REDIS_TIMEOUT: float
    REDIS_RETRY: float
    UPLOAD_QUOTA_BYTES: int | None
    _rates: dict
    #: The Redis URL the limits use, None when they live in this process.
    redis_url: str | None

    def rates(self, action: str) -> dict:
        """``{scope: Rate or None}`` for ``action``."""
        return {scope: self._rates[_setting_key(action, scope)] for scope in ACTIONS[action]}

    @classmethod
    def from_django(cls):
        raw = getattr(settings, SETTING_NAME, None) or {}
        if not isinstance(raw, dict):
            raise _error(f"must be a dict, not {type(raw).__name__}.")
        unknown = sorted(set(raw) - set(DEFAULTS))
        if unknown:
            raise _error(f"unknown key(s) {unknown}; known: {sorted(DEFAULTS)}.")
        options = {**DEFAULTS, **raw}
        if not isinstance(options["ENABLED"], bool):
            raise _error(f"ENABLED must be True or False, not {options['ENABLED']!r}.")
        rates = {}
        for key in RATE_DEFAULTS:
            value = options[key]
            if value is None or not options["ENABLED"]:
                rates[key] = None
                continue
            try:
                count, period = value
                rates[key] = Rate(count, period)
            except (TypeError, ValueError) as exc:
                raise _error(
                    f"{key} must be (count, seconds) or None, not {value!r}: {exc}."
                ) from None
        if options["BACKEND"] not in BACKENDS:
            raise _error(f"BACKEND must be one of {BACKENDS}, not {options['BACKEND']!r}.")
        for key in ("REDIS_TIMEOUT", "REDIS_RETRY"):
            value = options[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise _error(f"{key} must be positive seconds, not {value!r}.")
        quota = options["UPLOAD_QUOTA_BYTES"]
        if quota is not None and (
            isinstance(quota, bool) or not isinstance(quota, int) or quota <= 0
        ):
            raise _error(f"UPLOAD_QUOTA_BYTES must be a positive integer or None, not {quota!r}.")
        if not isinstance(options["KEY_PREFIX"], str) or not options["KEY_PREFIX"]:
            raise _error("KEY_PREFIX must be a non-empty string.")
        return cls(
            BACKEND=options["BACKEND"],
            REDIS_URL=options["REDIS_URL"],
            KEY_PREFIX=options["KEY_PREFIX"],
            REDIS_TIMEOUT=float(options["REDIS_TIMEOUT"]),
            REDIS_RETRY=float(options["REDIS_RETRY"]),
            UPLOAD_QUOTA_BYTES=quota,
            _rates=rates,
            redis_url=_redis_url(options),
        )


def _redis_url(options) -> str | None:
    from notifier.conf import get_settings, validate_url

    backend = options["BACKEND"]
    if backend == "memory":
        return None
    notifier = get_settings()
    if backend == "auto" and notifier.backend != REDIS_NOTIFIER:
        return None
    url = options["REDIS_URL"] or notifier.url_and_source[0]
    if url is None:
        raise _error('BACKEND "redis" needs a Redis URL: set REDIS_URL or the notifier\'s.')
    try:
        validate_url(url)
    except ValueError as exc:
        raise _error(f"the Redis URL is not valid: {exc}.") from None
    return url


_lock = threading.Lock()
_snapshot: LimitSettings | None = None


def limit_settings() -> LimitSettings:
    """The snapshot (built on first use; raises ImproperlyConfigured on a bad setting)."""
    global _snapshot
    with _lock:
        if _snapshot is None:
            _snapshot = LimitSettings.from_django()
        return _snapshot


@receiver(setting_changed)
def _reset(setting, **kwargs):
    global _snapshot
    if setting in WATCHED_SETTINGS:
        with _lock:
            _snapshot = None


def check_limit_settings(app_configs=None, **kwargs):
    """System check ``webchat.E040``: WEBCHAT_LIMITS is valid."""
    try:
        LimitSettings.from_django()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="See README 'Limits and quotas'.", id="webchat.E040")]
    return []
