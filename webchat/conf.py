"""webchat's settings: every ``WEBCHAT_*`` setting, read lazily through one snapshot.

::

    from webchat.conf import settings

    settings.max_poll_activities  # validated on first read, kept until a setting changes

Nothing is read at import time. The snapshot is built on first use and dropped when a test
changes a ``WEBCHAT_*`` setting (``setting_changed``). Each property validates its value
(the validators are in :mod:`webchat.conf_base`) and raises
:class:`InvalidWebchatConfiguration` carrying the id of the system check that reports the
same mistake: ``webchat.checks.check_settings`` reads every property, so ``manage.py
check`` and the code that uses a value share one validator, and ``webchat/asgi.py`` refuses
to serve with a broken setting rather than failing request after request.
(``WEBCHAT_NOTIFIER`` is the notifier app's: ``notifier.conf``.)

Adding a key (the only steps):

1. Give it a default in :data:`DEFAULTS`: under its dict (``"WEBCHAT_DIRECTLINE"``...), or
   as a new top-level setting. A new dict also gets its check id in :data:`CHECK_IDS`.
2. Add a ``cached_property`` to :class:`WebchatSettings` that reads it with a validator
   (``self._positive_int("WEBCHAT_DIRECTLINE", "MAX_POLL_BYTES")``) or raises
   ``self._error(...)`` itself. ``check_settings`` finds every ``cached_property`` on its own.
3. Document it in the README and test a bad value (``tests/test_webchat_conf.py``).
"""

import ipaddress
import os

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.functional import cached_property
from django.utils.module_loading import import_string

from .conf_base import InvalidWebchatConfiguration, SettingsSnapshot

__all__ = ["DEFAULTS", "InvalidWebchatConfiguration", "WebchatSettings", "get_settings",
           "settings"]

MIB = 1024 * 1024

#: Every setting webchat reads, with its default; dict settings list their keys' defaults.
DEFAULTS = {
    "WEBCHAT_BOT": "webchat.bot.echo_bot",  # a dotted path or a callable; None: no bot
    "WEBCHAT_BOT_WORKERS": 4,  # threads running the bot
    "WEBCHAT_BOT_MAX_PENDING": 1000,  # user activities waiting for the bot
    "WEBCHAT_BOT_MAX_PENDING_PER_TENANT": 100,  # ... of one tenant (webchat/bot_queue.py)
    "WEBCHAT_BOT_MAX_PENDING_PER_CONVERSATION": 20,  # ... of one conversation
    "WEBCHAT_RETENTION_DAYS": None,  # apply_retention deletes what is older; None: keep all
    "WEBCHAT_DEMO_PEERS": [],  # base URLs of replicas the demo page links to
    "WEBCHAT_GC_FREEZE": True,  # webchat/gc_freeze.py
    "WEBCHAT_TOKEN_SIGNING_KEY": None,  # None: the dev key (refused in production, E102)
    "WEBCHAT_DEV_KEY_FILE": None,  # the per-install dev signing key (webchat/dev_key.py)
    "WEBCHAT_TOKENS": {
        "TTL": 1800,  # seconds a token lives after it is issued or renewed (the seed's)
        "MAX_SESSION": 86_400,  # seconds after a session's first token: no renewal past it
    },
    "WEBCHAT_ADMIN_PATH": "admin/",  # where the admin is served; None: nowhere
    "WEBCHAT_DIRECTLINE": {
        "MAX_ACTIVITY_BYTES": 256 * 1024,  # a posted activity's JSON (and an upload's)
        "MAX_FILE_BYTES": 4 * MIB,  # each uploaded file
        "MAX_UPLOAD_FILES": 10,  # files in one upload
        "MAX_POLL_ACTIVITIES": 1000,  # activities in one poll or bot API page
        "MAX_POLL_BYTES": 4 * MIB,  # JSON of the activities in one page (at least one)
        "DB_THREADS": 4,  # threads (and connections) serving the API
        "RESERVED_USER_NAMES": ["Bot"],  # names a user may not display as (the bot's)
    },
    "WEBCHAT_STREAM": {
        "MAX_SOCKETS_PER_TENANT": 1000,  # open sockets of one tenant on this replica
        "MAX_SOCKETS_PER_CONVERSATION": 5,  # open sockets of one conversation on this replica
        "MAX_SOCKETS_PER_USER": 10,  # open sockets of one token user on this replica
        "MAX_SOCKETS_PER_IP": 100,  # open sockets from one client IP on this replica
        "IDLE_TIMEOUT": 300,  # seconds without a client frame or a sent frame
        "MAX_REPLAY": 1000,  # activities a connecting socket may have missed
        "MAX_FRAME_BYTES": MIB,  # largest frame either way (daphne's limit too)
        "CATCH_UP_INTERVAL": 1.5,  # seconds between watermark sweeps (webchat/catch_up.py)
    },
    # Rate limits (count, seconds) or None, and the upload quota: webchat/throttle.py,
    # webchat/quota.py, README "Limits and quotas".
    "WEBCHAT_LIMITS": {
        "ENABLED": True,  # False: no rate limit at all (the quota still holds)
        "BACKEND": "auto",  # "auto": Redis with the Redis notifier, else "memory"; "redis"
        "REDIS_URL": None,  # None: the notifier's
        "KEY_PREFIX": "webchat:rate",
        "REDIS_TIMEOUT": 0.5,  # seconds a hit waits for Redis before falling back
        "REDIS_RETRY": 5,  # seconds on this replica's own limits after a Redis error
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
        "UPLOAD_QUOTA_BYTES": 1 << 30,  # stored upload bytes per tenant; None: no quota
    },
    "WEBCHAT_SEED": {
        # Tenants (names or slugs) whose .../webchat/<tenant>/token answers without the
        # secret, as the seed's does for every tenant (webchat/views/tenant_token.py).
        "PUBLIC_TOKEN_TENANTS": [],
        # POST /conversations with the secret and the same user.id within this many seconds
        # gets the same conversation (webchat/conversation_dedup.py); 0 turns it off.
        "CONVERSATION_DEDUP_SECONDS": 30,
    },
    "WEBCHAT_METRICS": {
        "ENABLED": True,  # False: /metrics answers 404
        "ALLOWED_IPS": None,  # None: from anywhere (with DEBUG off the token is still needed)
        "TOKEN": None,  # "Authorization: Bearer <TOKEN>"; required with DEBUG off
    },
    # Proxies whose X-Forwarded-For / -Proto are believed (webchat/forwarded.py); []: none.
    "WEBCHAT_TRUSTED_PROXIES": ["127.0.0.0/8", "::1"],
}

#: The check id of each dict setting: not a dict, unknown keys, and bad values by default.
CHECK_IDS = {
    "WEBCHAT_DIRECTLINE": "webchat.E002",
    "WEBCHAT_STREAM": "webchat.E004",
    "WEBCHAT_LIMITS": "webchat.E040",
    "WEBCHAT_METRICS": "webchat.E020",
    "WEBCHAT_SEED": "webchat.E150",
    "WEBCHAT_TOKENS": "webchat.E050",
}

METRICS_TOKEN_MIN_LENGTH = 16
#: The seed's bounds for GREENTIC_DIRECTLINE_TOKEN_TTL_SECS (directline_session.rs). The
#: setting may go under the lower one, for tests only (the webchat.W050 check says so).
SEED_MIN_TTL, MAX_TTL = 60, 604_800
#: A year: sessions are bounded, whatever the setting.
MAX_MAX_SESSION = 366 * 86_400

#: The rate keys of WEBCHAT_LIMITS: ``<ACTION>_PER_<SCOPE>`` (webchat/throttle.py).
RATE_KEYS = tuple(key for key in DEFAULTS["WEBCHAT_LIMITS"] if "_PER_" in key)


class WebchatSettings(SettingsSnapshot):
    """One snapshot of the ``WEBCHAT_*`` settings; each property is validated on first read."""

    defaults = DEFAULTS
    check_ids = CHECK_IDS

    # WEBCHAT_BOT*: the in-process bot (webchat/bot.py).

    @cached_property
    def bot(self):
        """The bot callable, or None when WEBCHAT_BOT is None or empty (E001)."""
        value = self._value("WEBCHAT_BOT")
        if value is None or value == "" or callable(value):
            return value or None
        hint = "Use e.g. WEBCHAT_BOT = 'webchat.bot.echo_bot', or None to turn the bot off."
        if not isinstance(value, str):
            raise self._error("WEBCHAT_BOT", "WEBCHAT_BOT must be a dotted path to a "
                              f"callable, not {value!r}.", hint, "webchat.E001")
        try:
            bot = import_string(value)
        except ImportError as exc:
            raise self._error("WEBCHAT_BOT", f"WEBCHAT_BOT {value!r} cannot be imported: "
                              f"{exc}", hint, "webchat.E001") from None
        if not callable(bot):
            raise self._error("WEBCHAT_BOT", "WEBCHAT_BOT must be a dotted path to a "
                              f"callable, not {value!r}.", hint, "webchat.E001")
        return bot

    @cached_property
    def bot_workers(self):
        """Threads that run the bot (E005)."""
        return self._positive_int("WEBCHAT_BOT_WORKERS", check_id="webchat.E005")

    @cached_property
    def bot_max_pending(self):
        """User activities that may wait for the bot before more are dropped (E005)."""
        return self._positive_int("WEBCHAT_BOT_MAX_PENDING", check_id="webchat.E005")

    @cached_property
    def bot_max_pending_per_tenant(self):
        return self._positive_int("WEBCHAT_BOT_MAX_PENDING_PER_TENANT", check_id="webchat.E005")

    @cached_property
    def bot_max_pending_per_conversation(self):
        return self._positive_int(
            "WEBCHAT_BOT_MAX_PENDING_PER_CONVERSATION", check_id="webchat.E005"
        )

    # WEBCHAT_DIRECTLINE: the REST API's limits (E002).

    @cached_property
    def max_activity_bytes(self):
        return self._positive_int("WEBCHAT_DIRECTLINE", "MAX_ACTIVITY_BYTES")

    @cached_property
    def max_file_bytes(self):
        return self._positive_int("WEBCHAT_DIRECTLINE", "MAX_FILE_BYTES")

    @cached_property
    def max_upload_files(self):
        return self._positive_int("WEBCHAT_DIRECTLINE", "MAX_UPLOAD_FILES")

    @cached_property
    def max_upload_body(self):
        """The largest multipart body worth parsing: every file, the activity, and headers."""
        return self.max_upload_files * self.max_file_bytes + self.max_activity_bytes + 64 * 1024

    @cached_property
    def max_poll_activities(self):
        return self._positive_int("WEBCHAT_DIRECTLINE", "MAX_POLL_ACTIVITIES")

    @cached_property
    def max_poll_bytes(self):
        return self._positive_int("WEBCHAT_DIRECTLINE", "MAX_POLL_BYTES")

    @cached_property
    def reserved_user_names(self):
        """Display names a user may not take (compared folded: ``views.payloads``)."""
        names = self._value("WEBCHAT_DIRECTLINE", "RESERVED_USER_NAMES")
        if isinstance(names, str) or not isinstance(names, list | tuple) or not all(
            isinstance(name, str) and name.strip() for name in names
        ):
            raise self._error("WEBCHAT_DIRECTLINE", "WEBCHAT_DIRECTLINE['RESERVED_USER_NAMES'] "
                              f"must be a list of names, not {names!r}.",
                              'E.g. ["Bot", "Support"]: the names your bots display.')
        return tuple(names)

    @cached_property
    def db_threads(self):
        """Threads (each with its connection) serving the API; read once, when the first
        request starts them (``webchat.views.threads``)."""
        return self._positive_int("WEBCHAT_DIRECTLINE", "DB_THREADS")

    # WEBCHAT_STREAM: the stream's per-replica limits (E004).

    @cached_property
    def max_sockets_per_tenant(self):
        return self._positive_int("WEBCHAT_STREAM", "MAX_SOCKETS_PER_TENANT")

    @cached_property
    def max_sockets_per_conversation(self):
        return self._positive_int("WEBCHAT_STREAM", "MAX_SOCKETS_PER_CONVERSATION")

    @cached_property
    def max_sockets_per_user(self):
        return self._positive_int("WEBCHAT_STREAM", "MAX_SOCKETS_PER_USER")

    @cached_property
    def max_sockets_per_ip(self):
        return self._positive_int("WEBCHAT_STREAM", "MAX_SOCKETS_PER_IP")

    @cached_property
    def idle_timeout(self):
        return self._positive_number("WEBCHAT_STREAM", "IDLE_TIMEOUT")

    @cached_property
    def max_replay(self):
        return self._positive_int("WEBCHAT_STREAM", "MAX_REPLAY")

    @cached_property
    def max_frame_bytes(self):
        return self._positive_int("WEBCHAT_STREAM", "MAX_FRAME_BYTES")

    @cached_property
    def catch_up_interval(self):
        return self._positive_number("WEBCHAT_STREAM", "CATCH_UP_INTERVAL")

    # WEBCHAT_LIMITS: rate limits and the upload quota (E040), WEBCHAT_RETENTION_DAYS (E041).

    @cached_property
    def limits_enabled(self):
        return self._bool("WEBCHAT_LIMITS", "ENABLED")

    @cached_property
    def limits_backend(self):
        value = self._value("WEBCHAT_LIMITS", "BACKEND")
        if value not in ("auto", "memory", "redis"):
            raise self._error("WEBCHAT_LIMITS", "WEBCHAT_LIMITS['BACKEND'] must be 'auto', "
                              f"'memory' or 'redis', not {value!r}.",
                              "'auto' shares the limits through Redis with the Redis notifier.")
        return value

    @cached_property
    def limits_redis_url(self):
        """The Redis URL set for the limits, or None: the notifier's (webchat.throttle)."""
        from notifier.conf import validate_url

        url = self._value("WEBCHAT_LIMITS", "REDIS_URL")
        if url is not None:
            try:
                validate_url(url)
            except ValueError as exc:
                raise self._error("WEBCHAT_LIMITS", f"WEBCHAT_LIMITS['REDIS_URL'] is not "
                                  f"valid: {exc}.", "E.g. redis://127.0.0.1:6379/0.") from None
        return url

    @cached_property
    def limits_key_prefix(self):
        value = self._value("WEBCHAT_LIMITS", "KEY_PREFIX")
        if not isinstance(value, str) or not value:
            raise self._error("WEBCHAT_LIMITS", "WEBCHAT_LIMITS['KEY_PREFIX'] must be a "
                              f"non-empty string, not {value!r}.", "E.g. 'webchat:rate'.")
        return value

    @cached_property
    def limits_redis_timeout(self):
        return self._positive_number("WEBCHAT_LIMITS", "REDIS_TIMEOUT")

    @cached_property
    def limits_redis_retry(self):
        return self._positive_number("WEBCHAT_LIMITS", "REDIS_RETRY")

    @cached_property
    def rates(self):
        """``{"POSTS_PER_TOKEN": Rate or None, ...}``; every one None when not enabled."""
        from .ratelimit import Rate

        rates = {}
        for key in RATE_KEYS:
            value = self._value("WEBCHAT_LIMITS", key)
            if value is None:
                rates[key] = None
                continue
            try:
                count, period = value
                rates[key] = Rate(count, period)
            except (TypeError, ValueError) as exc:
                raise self._error("WEBCHAT_LIMITS", f"WEBCHAT_LIMITS[{key!r}] must be "
                                  f"(count, seconds) or None, not {value!r}: {exc}.",
                                  f"Remove it to use {DEFAULTS['WEBCHAT_LIMITS'][key]!r}.",
                                  ) from None
        if not self.limits_enabled:
            return dict.fromkeys(rates)
        return rates

    @cached_property
    def upload_quota_bytes(self):
        """Upload bytes a tenant may keep stored, or None for no quota (webchat.quota)."""
        if self._value("WEBCHAT_LIMITS", "UPLOAD_QUOTA_BYTES") is None:
            return None
        return self._positive_int("WEBCHAT_LIMITS", "UPLOAD_QUOTA_BYTES")

    @cached_property
    def retention_days(self):
        """Days conversations, activities and uploads are kept, or None (E041)."""
        value = self._value("WEBCHAT_RETENTION_DAYS")
        if value is None:
            return None
        return self._positive_number("WEBCHAT_RETENTION_DAYS", check_id="webchat.E041")

    # WEBCHAT_METRICS: who may read /metrics (E020-E023, webchat/metrics_access.py).

    @cached_property
    def metrics_enabled(self):
        return self._bool("WEBCHAT_METRICS", "ENABLED", check_id="webchat.E021")

    @cached_property
    def metrics_allowed_networks(self):
        """The networks allowed to scrape, or None for the default (E022)."""
        allowed = self._value("WEBCHAT_METRICS", "ALLOWED_IPS")
        if allowed is None:
            return None
        hint = 'E.g. ["127.0.0.1", "10.0.0.0/8"].'
        if isinstance(allowed, str) or not isinstance(allowed, list | tuple):
            raise self._error("WEBCHAT_METRICS", "WEBCHAT_METRICS['ALLOWED_IPS'] must be a "
                              f"list of IPs or networks, not {allowed!r}.", hint,
                              "webchat.E022")
        networks = []
        for entry in allowed:
            try:
                networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise self._error("WEBCHAT_METRICS", f"WEBCHAT_METRICS['ALLOWED_IPS'] holds "
                                  f"{entry!r}, not an IP address or network.", hint,
                                  "webchat.E022") from None
        return tuple(networks)

    @cached_property
    def metrics_token(self):
        """The bearer token that may scrape from anywhere, or None (E023)."""
        token = self._value("WEBCHAT_METRICS", "TOKEN")
        if token is not None and (
            not isinstance(token, str) or len(token) < METRICS_TOKEN_MIN_LENGTH
        ):
            raise self._error(
                "WEBCHAT_METRICS",
                f"WEBCHAT_METRICS['TOKEN'] must be a string of at least "
                f"{METRICS_TOKEN_MIN_LENGTH} characters.",
                "Use a random value, e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`, or None.",
                "webchat.E023",
            )
        return token

    # WEBCHAT_TRUSTED_PROXIES: whose forwarded headers are believed (E024).

    @cached_property
    def trusted_proxies(self):
        """The trusted proxies' networks, a tuple (E024, webchat/forwarded.py)."""
        configured = self._value("WEBCHAT_TRUSTED_PROXIES")
        hint = 'A list of IPs or networks, e.g. ["127.0.0.1", "10.0.0.0/8"]; [] trusts none.'
        if isinstance(configured, str) or not isinstance(configured, list | tuple):
            raise self._error("WEBCHAT_TRUSTED_PROXIES", "WEBCHAT_TRUSTED_PROXIES must be a "
                              f"list, not {configured!r}.", hint, "webchat.E024")
        networks = []
        for entry in configured:
            try:
                networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise self._error("WEBCHAT_TRUSTED_PROXIES", "WEBCHAT_TRUSTED_PROXIES holds "
                                  f"{entry!r}, not an IP address or network.", hint,
                                  "webchat.E024") from None
        return tuple(networks)

    # WEBCHAT_SEED: the seed's URL layout (E150, webchat/tenant_paths.py).

    @cached_property
    def public_token_tenants(self):
        """Names or slugs of the tenants whose token endpoint needs no secret."""
        tenants = self._value("WEBCHAT_SEED", "PUBLIC_TOKEN_TENANTS")
        if isinstance(tenants, str) or not isinstance(tenants, list | tuple | set | frozenset) or (
            not all(isinstance(name, str) and name for name in tenants)
        ):
            raise self._error("WEBCHAT_SEED", "WEBCHAT_SEED['PUBLIC_TOKEN_TENANTS'] must be a "
                              f"list of tenant names or slugs, not {tenants!r}.",
                              'E.g. ["acme"]; in the environment WEBCHAT_PUBLIC_TOKEN_TENANTS='
                              '"acme,globex".')
        return frozenset(tenants)

    @cached_property
    def conversation_dedup_seconds(self):
        """The POST /conversations dedup window in seconds; 0: off."""
        value = self._value("WEBCHAT_SEED", "CONVERSATION_DEDUP_SECONDS")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
            raise self._error("WEBCHAT_SEED", "WEBCHAT_SEED['CONVERSATION_DEDUP_SECONDS'] must "
                              f"be a number of seconds from 0 (off) to 3600, not {value!r}.",
                              "The seed's window is 30.")
        return value

    # The rest.

    @cached_property
    def gc_freeze(self):
        """Whether to freeze the long-lived heap (E003, webchat/gc_freeze.py)."""
        return self._bool("WEBCHAT_GC_FREEZE", check_id="webchat.E003")

    @cached_property
    def demo_peers(self):
        """Base URLs (no trailing slash) of the replicas the demo page links to (E006)."""
        peers = self._value("WEBCHAT_DEMO_PEERS")
        if isinstance(peers, str) or not isinstance(peers, list | tuple) or not all(
            isinstance(peer, str) and peer.startswith(("http://", "https://")) for peer in peers
        ):
            raise self._error("WEBCHAT_DEMO_PEERS", "WEBCHAT_DEMO_PEERS must be a list of "
                              f"http(s) base URLs, not {peers!r}.",
                              'E.g. ["http://127.0.0.1:8001"].', "webchat.E006")
        return [peer.rstrip("/") for peer in peers]

    @cached_property
    def token_signing_key(self):
        """The key Direct Line tokens are signed with, or None: the development key
        (E007 when not a string; production strength is deploy check E102)."""
        key = self._value("WEBCHAT_TOKEN_SIGNING_KEY")
        if key is not None and not isinstance(key, str):
            raise self._error("WEBCHAT_TOKEN_SIGNING_KEY", "WEBCHAT_TOKEN_SIGNING_KEY must be "
                              f"a string, not {type(key).__name__}.",
                              "Set it from the environment variable of the same name.",
                              "webchat.E007")
        return key or None

    # WEBCHAT_TOKENS: token lifetimes (E050, webchat/tokens.py, README "Token lifecycle").

    @cached_property
    def token_ttl(self):
        ttl = self._positive_int("WEBCHAT_TOKENS", "TTL")
        if ttl > MAX_TTL:
            raise self._error("WEBCHAT_TOKENS", f"WEBCHAT_TOKENS['TTL'] is {ttl}: at most "
                              f"{MAX_TTL} s (a week).", f"Use {MAX_TTL} or less.")
        return ttl

    @cached_property
    def token_max_session(self):
        longest = self._positive_int("WEBCHAT_TOKENS", "MAX_SESSION")
        if longest > MAX_MAX_SESSION:
            raise self._error("WEBCHAT_TOKENS", f"WEBCHAT_TOKENS['MAX_SESSION'] is {longest}: "
                              f"at most {MAX_MAX_SESSION} s (a year).",
                              f"Use {MAX_MAX_SESSION} or less.")
        if longest < self.token_ttl:
            raise self._error("WEBCHAT_TOKENS", f"WEBCHAT_TOKENS['MAX_SESSION'] ({longest} s) "
                              f"is shorter than 'TTL' ({self.token_ttl} s).",
                              "A session must outlive its first token.")
        return longest

    @cached_property
    def token_touch_every(self):
        """Seconds between two writes of a conversation's ``last_seen``: a tenth of the TTL,
        so the sliding window is never short by more than that, at one write per interval."""
        return max(1, self.token_ttl // 10)

    @cached_property
    def dev_key_file(self):
        """Where the development signing key lives, or None (E051)."""
        path = self._value("WEBCHAT_DEV_KEY_FILE")
        if path is not None and not isinstance(path, str | os.PathLike):
            raise self._error("WEBCHAT_DEV_KEY_FILE", "WEBCHAT_DEV_KEY_FILE must be a path, "
                              f"not {type(path).__name__}.", "Or None.", "webchat.E051")
        return None if path is None else os.fspath(path)

    # WEBCHAT_ADMIN_PATH.

    @cached_property
    def admin_path(self):
        """The admin's URL prefix ("ops-7f3a/"), or None when it is not served (E008)."""
        value = self._value("WEBCHAT_ADMIN_PATH")
        if value in (None, ""):
            return None
        if not isinstance(value, str) or value.startswith("/") or not value.endswith("/"):
            raise self._error("WEBCHAT_ADMIN_PATH", "WEBCHAT_ADMIN_PATH must be a path such as "
                              f"'ops-7f3a/' (no leading slash, a trailing one), not {value!r}.",
                              "Or None to serve no admin.", "webchat.E008")
        return value

_cached = None


def get_settings():
    """Return the current :class:`WebchatSettings` snapshot, building it on first use."""
    global _cached
    snapshot = _cached
    if snapshot is None:
        snapshot = _cached = WebchatSettings.from_django()
    return snapshot


@receiver(setting_changed)
def reset_settings(*, setting, **kwargs):
    """Drop the snapshot when a test overrides a ``WEBCHAT_*`` setting."""
    global _cached
    if setting in DEFAULTS:
        _cached = None


class _CurrentSettings:
    """``webchat.conf.settings``: attribute reads go to the current snapshot."""

    def __getattr__(self, name):
        return getattr(get_settings(), name)

    def __repr__(self):
        return "<webchat.conf.settings>"


settings = _CurrentSettings()
