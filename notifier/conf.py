"""The backplane's settings: one dict, ``settings.BACKPLANE``, read lazily.

``WEBCHAT_NOTIFIER`` is the same dict under its first name, still read when ``BACKPLANE`` is
not set (warning ``notifier.W003`` when both are)::

    BACKPLANE = {
        "BACKEND": "memory",  # "memory", "redis", or a dotted path to a BaseNotifier subclass
        "URL": None,  # Redis URL; None: reuse the Redis URL of CHANNEL_LAYERS or CACHES
        "CHANNEL": "greentic:webchat:notify",  # the global pub/sub channel (wire v1)
        "CAPACITY": 1000,  # notifications waiting for Redis; when full the oldest is dropped
        "INSTANCE_ID": None,  # this process's id on the wire (a UUID); None: fresh per process
        "SIGNING_KEYS": None,  # {key id: secret} (or "k1:secret,k0:old"): signed wire, off if None
        "SIGNING_KEY_ID": None,  # the key id publishers sign with (optional with one key)
        "SENTINEL": None,  # instead of URL: {"HOSTS": [...], "SERVICE": ..., ...} (see below)
        "TLS": None,  # {"CA_CERTS": ..., "CERTFILE": ..., "KEYFILE": ..., ...}: notifier.tls
        "READINESS": "degraded-ok",  # or "strict": any backplane trouble makes /readyz 503
        "UNREADY_AFTER": 5.0,  # seconds a problem must last before readiness turns red
        "READY_AFTER": 2.0,  # seconds of health before it is green again
        "CLUSTER": None,  # instead of URL: {"NODES": ["host:port", ...], ...} (see below)
    }

``SENTINEL`` is the ``redis+sentinel://`` URL as keys (:func:`sentinel_url`): ``HOSTS``
(``["host:port", ...]`` or ``[(host, port), ...]``), ``SERVICE``, optional ``DB``,
``USERNAME``/``PASSWORD`` (the master's) and ``SENTINEL_USERNAME``/``SENTINEL_PASSWORD``;
with ``TLS`` set it stands for ``rediss+sentinel://`` (TLS to the sentinels and the master).
``CLUSTER`` is the ``redis+cluster://`` URL as keys (:func:`cluster_url`): ``NODES``, optional
``USERNAME``/``PASSWORD`` and ``DB`` (only 0); with ``TLS`` set it stands for
``rediss+cluster://``.

Nothing is read at import time. :func:`get_settings` builds a snapshot on first use and drops
it when a test changes either name, ``CHANNEL_LAYERS`` or ``CACHES``. Each property
validates its value and raises :class:`~notifier.exceptions.InvalidNotifierConfiguration`
carrying the id of the system check that reports the same mistake.
"""

import os
import threading
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.functional import cached_property
from django.utils.module_loading import import_string

from .exceptions import InvalidNotifierConfiguration

SETTING_NAME = "BACKPLANE"
#: The setting's first name (webchat's), read when ``BACKPLANE`` is not set.
LEGACY_SETTING_NAME = "WEBCHAT_NOTIFIER"

#: Settings whose change invalidates the snapshot (the URL may come from the last two).
WATCHED_SETTINGS = frozenset({SETTING_NAME, LEGACY_SETTING_NAME, "CHANNEL_LAYERS", "CACHES"})

BACKEND_ALIASES = {
    "memory": "notifier.backends.memory.InMemoryNotifier",
    "redis": "notifier.backends.redis.RedisNotifier",
}

# Same value as wire.DEFAULT_CHANNEL; spelled out so reading settings never imports the codec.
DEFAULT_CHANNEL = "greentic:webchat:notify"

DEFAULTS = {
    "BACKEND": "memory",
    "URL": None,
    "CHANNEL": DEFAULT_CHANNEL,
    "CAPACITY": 1000,
    "INSTANCE_ID": None,
    "SIGNING_KEYS": None,
    "SIGNING_KEY_ID": None,
    "SENTINEL": None,
    "TLS": None,
    "READINESS": "degraded-ok",
    "UNREADY_AFTER": 5.0,
    "READY_AFTER": 2.0,
    "CLUSTER": None,
}

#: ``READINESS`` values (notifier.health): serve degraded through a shared outage, or not.
READINESS_MODES = ("degraded-ok", "strict")

URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster",
               "rediss+cluster")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

SENTINEL_KEYS = ("HOSTS", "SERVICE", "DB", "USERNAME", "PASSWORD", "SENTINEL_USERNAME",
                 "SENTINEL_PASSWORD")

CLUSTER_KEYS = ("NODES", "USERNAME", "PASSWORD", "DB")

CLUSTER_HINT = ("Use redis+cluster://[user:password@]host:port[,host:port...] (rediss+cluster:// "
                "for TLS), naming a few nodes of the cluster; a cluster has only database 0.")

SENTINEL_HINT = ("Use redis+sentinel://[user:password@]host:port[,host:port...]/<service_name>"
                 "[/<db>] (optionally ?sentinel_username=...&sentinel_password=...).")


def mask_url(url):
    """Return ``url`` with its password (userinfo or ``?password=``) replaced by ``***``.

    Used in every message and log line that names a Redis URL. Never raises: a value that
    does not parse is masked from ``://`` to ``@``.
    """
    if not isinstance(url, str):
        return repr(url)
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:***@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(_secret_key(key) for key, _ in pairs):
                masked = [(k, "***" if _secret_key(k) else v) for k, v in pairs]
                query = urlencode(masked, safe="*")
        if netloc == parts.netloc and query == parts.query:
            return url  # nothing secret; urlunsplit would also drop unix:///'s empty host
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        head, sep, rest = url.partition("://")
        if sep and "@" in rest:
            return f"{head}://***@{rest.rpartition('@')[2]}"
        return url


def _secret_key(key):
    # password, sentinel_password, ssl_password: every query parameter that names a secret.
    return key.lower().endswith("password")


def validate_url(url):
    """Raise ``ValueError`` naming the problem when redis-py cannot use ``url``."""
    from redis.connection import parse_url  # redis-py's own parser: what it accepts works

    if not isinstance(url, str) or not url.strip():
        raise ValueError("the URL must be a non-empty string")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in URL_SCHEMES:
        raise ValueError(f"the scheme must be one of {', '.join(s + '://' for s in URL_SCHEMES)}")
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        from .sentinel import parse_url as parse_sentinel_url

        parse_sentinel_url(url)
        return
    if scheme in CLUSTER_SCHEMES:
        from .cluster import parse_url as parse_cluster_url

        parse_cluster_url(url)
        return
    kwargs = parse_url(url)
    if scheme != "unix" and not kwargs.get("host"):
        raise ValueError("the URL names no host")
    if scheme == "unix" and not kwargs.get("path"):
        raise ValueError("the URL names no socket path")


def _redis_url_from_channel_layers(layers):
    # channels_redis: CONFIG["hosts"] holds URLs, {"address": URL, ...} dicts or (host, port).
    for alias in sorted(layers, key=lambda name: name != "default"):
        layer = layers[alias] or {}
        if not str(layer.get("BACKEND", "")).startswith("channels_redis."):
            continue
        hosts = (layer.get("CONFIG") or {}).get("hosts") or []
        if isinstance(hosts, str):
            hosts = [hosts]
        for host in hosts:
            if isinstance(host, str):
                return host, f"CHANNEL_LAYERS[{alias!r}]"
            if isinstance(host, dict) and isinstance(host.get("address"), str):
                return host["address"], f"CHANNEL_LAYERS[{alias!r}]"
            if isinstance(host, (list, tuple)) and len(host) == 2:
                return f"redis://{host[0]}:{host[1]}/0", f"CHANNEL_LAYERS[{alias!r}]"
    return None, None


def _redis_url_from_caches(caches):
    # Django's RedisCache (and django-redis) take a URL or a list of URLs, primary first.
    for alias in sorted(caches, key=lambda name: name != "default"):
        cache = caches[alias] or {}
        if "redis" not in str(cache.get("BACKEND", "")).lower():
            continue
        location = cache.get("LOCATION")
        if isinstance(location, (list, tuple)):
            location = location[0] if location else None
        if isinstance(location, str):
            location = location.replace(";", ",").split(",")[0].strip()
            if location.split("://")[0] in URL_SCHEMES:
                return location, f"CACHES[{alias!r}]"
    return None, None


SENTINEL_KEYS_HINT = ('E.g. {"HOSTS": ["10.0.0.1:26379", "10.0.0.2:26379"], "SERVICE": '
                      '"mymaster"}, optionally "DB", "USERNAME", "PASSWORD" (the master\'s), '
                      '"SENTINEL_USERNAME" and "SENTINEL_PASSWORD".')


def _sentinel_error(message, hint):
    return InvalidNotifierConfiguration(message, hint=hint, check_id="notifier.E008")


def sentinel_url(options, *, tls=False):
    """The ``redis+sentinel://`` URL (``rediss+sentinel://`` with ``tls``) that the
    ``SENTINEL`` dict stands for; ``ValueError`` naming the problem when it is malformed."""
    from .hosts import hosts_setting
    from .sentinel import SentinelURL, parse_url

    if not isinstance(options, dict):
        raise ValueError(f"it must be a dict, not {type(options).__name__}")
    unknown = sorted(str(key) for key in options if key not in SENTINEL_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}")
    hosts = hosts_setting(options.get("HOSTS"), "HOSTS")
    service = options.get("SERVICE")
    if not isinstance(service, str) or not service.strip():
        raise ValueError(f"SERVICE must be the monitored master's name, not {service!r}")
    db = options.get("DB", 0)
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise ValueError(f"DB must be a non-negative integer, not {db!r}")
    strings = {}
    for key in ("USERNAME", "PASSWORD", "SENTINEL_USERNAME", "SENTINEL_PASSWORD"):
        value = options.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        strings[key.lower()] = value
    # Through the URL parser: one validation of the addresses for both forms.
    parsed = parse_url(f"redis+sentinel://{hosts}/x")
    return SentinelURL(hosts=parsed.hosts, service=service, db=db, tls=tls,
                       **strings).to_url()


CLUSTER_KEYS_HINT = ('E.g. {"NODES": ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"]}, '
                     'optionally "USERNAME", "PASSWORD" and "DB" (only 0); with the TLS key '
                     'beside it, TLS to every node (rediss+cluster://).')


def _cluster_error(message, hint):
    return InvalidNotifierConfiguration(message, hint=hint, check_id="notifier.E009")


def cluster_url(options, *, tls=False):
    """The ``redis+cluster://`` URL (``rediss+cluster://`` with ``tls``) that the ``CLUSTER``
    dict stands for; ``ValueError`` naming the problem when it is malformed."""
    from .cluster import ClusterURL, parse_url
    from .hosts import hosts_setting

    if not isinstance(options, dict):
        raise ValueError(f"it must be a dict, not {type(options).__name__}")
    unknown = sorted(str(key) for key in options if key not in CLUSTER_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}")
    nodes = hosts_setting(options.get("NODES"), "NODES")
    db = options.get("DB", 0)
    if db != 0 or isinstance(db, bool):
        raise ValueError(f"DB must be 0 (a Redis Cluster has only database 0), not {db!r}")
    strings = {}
    for key in ("USERNAME", "PASSWORD"):
        value = options.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        strings[key.lower()] = value
    # Through the URL parser: one validation of the addresses for both forms.
    parsed = parse_url(f"redis+cluster://{nodes}")
    return ClusterURL(hosts=parsed.hosts, tls=tls, **strings).to_url()


class NotifierSettings:
    """One snapshot of ``BACKPLANE`` (or ``WEBCHAT_NOTIFIER``); each property is validated on
    first read. ``name`` is the setting it came from, named in every error message;
    ``shadowed`` the other name when both are set (warning W003)."""

    def __init__(self, raw, *, channel_layers=None, caches=None, name=SETTING_NAME,
                 shadowed=None):
        self.raw = raw
        self.name = name
        self.shadowed = shadowed
        self._channel_layers = channel_layers or {}
        self._caches = caches or {}

    @classmethod
    def from_django(cls):
        """Read Django's settings now (called lazily by :func:`get_settings`)."""
        raw = getattr(django_settings, SETTING_NAME, None)
        legacy = getattr(django_settings, LEGACY_SETTING_NAME, None)
        name, shadowed = SETTING_NAME, None
        if raw is None and legacy is not None:
            raw, name = legacy, LEGACY_SETTING_NAME
        elif raw is not None and legacy is not None:
            shadowed = LEGACY_SETTING_NAME
        return cls(
            raw,
            channel_layers=getattr(django_settings, "CHANNEL_LAYERS", None),
            caches=getattr(django_settings, "CACHES", None),
            name=name,
            shadowed=shadowed,
        )

    @cached_property
    def options(self):
        """The dict with defaults filled in; raises E007 when the setting is not a dict."""
        if self.raw is None:
            return dict(DEFAULTS)
        if not isinstance(self.raw, dict):
            raise InvalidNotifierConfiguration(
                f"{self.name} must be a dict, not {type(self.raw).__name__}.",
                hint=f'Set {self.name} = {{"BACKEND": "memory"}} or {{"BACKEND": "redis", '
                '"URL": "redis://127.0.0.1:6379/0"}.',
                check_id="notifier.E007",
            )
        return {**DEFAULTS, **self.raw}

    @property
    def unknown_keys(self):
        """Keys of the dict that the notifier does not read (probably typos)."""
        if not isinstance(self.raw, dict):
            return []
        return sorted(str(key) for key in self.raw if key not in DEFAULTS)

    @cached_property
    def backend(self):
        """The backend's dotted path, after resolving the ``memory``/``redis`` aliases."""
        value = self.options["BACKEND"]
        if not isinstance(value, str) or not value.strip():
            raise self._backend_error(f"BACKEND must be a non-empty string, not {value!r}.")
        value = value.strip()
        return BACKEND_ALIASES.get(value.lower(), value)

    @cached_property
    def backend_class(self):
        """The notifier class named by BACKEND (E001 when it is unknown or no notifier)."""
        from .backends.base import BaseNotifier

        path = self.backend
        if "." not in path:
            raise self._backend_error(f"Unknown notifier backend {path!r}.")
        try:
            backend_class = import_string(path)
        except ImportError as exc:
            raise self._backend_error(f"Cannot import notifier backend {path!r}: {exc}") from exc
        if not (isinstance(backend_class, type) and issubclass(backend_class, BaseNotifier)):
            raise self._backend_error(
                f"Notifier backend {path!r} is not a subclass of "
                "notifier.backends.base.BaseNotifier."
            )
        return backend_class

    def _backend_error(self, message):
        return InvalidNotifierConfiguration(
            message,
            hint=f'Set {self.name}["BACKEND"] to "memory", "redis" or the dotted path of a '
            "BaseNotifier subclass.",
            check_id="notifier.E001",
        )

    @cached_property
    def url_and_source(self):
        """``(url, where it came from)``, or ``(None, None)`` when nothing names a Redis URL."""
        url = self.options["URL"]
        sentinel = self.options["SENTINEL"]
        cluster = self.options["CLUSTER"]
        if cluster is not None:
            where = f"{self.name}['CLUSTER']"
            if url not in (None, "") or sentinel is not None:
                other = "URL" if url not in (None, "") else "SENTINEL"
                raise _cluster_error(f"{self.name} sets both {other} and CLUSTER.",
                                     f"Remove one of them: {where} stands for a "
                                     "redis+cluster:// URL.")
            try:
                return cluster_url(cluster, tls=self.options["TLS"] is not None), where
            except ValueError as exc:
                raise _cluster_error(f"Invalid {where}: {exc}.", CLUSTER_KEYS_HINT) from None
        if sentinel is not None:
            where = f"{self.name}['SENTINEL']"
            if url not in (None, ""):
                raise _sentinel_error(f"{self.name} sets both URL and SENTINEL.",
                                      f"Remove one of them: {where} stands for a "
                                      "redis+sentinel:// URL.")
            try:
                return sentinel_url(sentinel, tls=self.options["TLS"] is not None), where
            except ValueError as exc:
                raise _sentinel_error(f"Invalid {where}: {exc}.", SENTINEL_KEYS_HINT) from None
        if url not in (None, ""):
            return url, f"{self.name}['URL']"
        url, source = _redis_url_from_channel_layers(self._channel_layers)
        if url is None:
            url, source = _redis_url_from_caches(self._caches)
        return url, source

    @cached_property
    def url(self):
        """The Redis URL: E002 when the backend needs one and none is found, E003 if invalid."""
        url, source = self.url_and_source
        if url is None:
            if self.backend_class.requires_url:
                raise InvalidNotifierConfiguration(
                    f"The {self.backend} notifier needs a Redis URL and none is configured.",
                    hint=f'Set {self.name}["URL"] (e.g. "redis://127.0.0.1:6379/0"), or the '
                    "REDIS_URL environment variable, or configure a channels_redis layer in "
                    "CHANNEL_LAYERS or a Redis cache in CACHES whose URL it can reuse.",
                    check_id="notifier.E002",
                )
            return None
        try:
            validate_url(url)
        except ValueError as exc:
            if url.partition("://")[0].lower() in ("redis+sentinel", "rediss+sentinel"):
                raise _sentinel_error(
                    f"Invalid Redis Sentinel URL {mask_url(url)} (from {source}): {exc}.",
                    SENTINEL_HINT) from None
            if url.partition("://")[0].lower() in CLUSTER_SCHEMES:
                raise _cluster_error(
                    f"Invalid Redis Cluster URL {mask_url(url)} (from {source}): {exc}.",
                    CLUSTER_HINT) from None
            raise InvalidNotifierConfiguration(
                f"Invalid Redis URL {mask_url(url)} (from {source}): {exc}.",
                hint='Use redis://[[user]:password@]host[:port][/db], rediss://..., '
                "unix:///path/to/socket, redis+sentinel://host:port[,host:port...]/<service> "
                "or redis+cluster://host:port[,host:port...].",
                check_id="notifier.E003",
            ) from None
        return url

    @cached_property
    def tls(self):
        """The :class:`~notifier.tls.TLSConfig` of ``TLS`` (None when unset): E050 when
        malformed, E052 when the URL is not ``rediss://``/``rediss+sentinel://``."""
        from . import tls

        try:
            config = tls.parse(self.options["TLS"])
        except ValueError as exc:
            raise InvalidNotifierConfiguration(f"Invalid {self.name}['TLS']: {exc}.",
                                               hint=tls.HINT, check_id="notifier.E050") from None
        url, source = self.url_and_source
        if config is not None and url is not None and not tls.is_tls_url(url):
            raise InvalidNotifierConfiguration(
                f"{self.name}['TLS'] is set but the URL {mask_url(url)} (from {source}) is "
                "not TLS: its connections would ignore it.",
                hint="Use rediss://... (or rediss+sentinel://..., rediss+cluster://...), or "
                "remove TLS.",
                check_id="notifier.E052",
            )
        return config

    @cached_property
    def channel(self):
        """The global pub/sub channel (E004 when empty or not a string)."""
        value = self.options["CHANNEL"]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str) or not value.strip():
            raise InvalidNotifierConfiguration(
                f"{self.name}['CHANNEL'] must be a non-empty string, not {value!r}.",
                hint=f"Remove it to use {DEFAULT_CHANNEL!r}, the reference's channel.",
                check_id="notifier.E004",
            )
        return value

    @cached_property
    def capacity(self):
        """The outbound queue's capacity (E005 unless a positive integer)."""
        value = self.options["CAPACITY"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidNotifierConfiguration(
                f"{self.name}['CAPACITY'] must be a positive integer, not {value!r}.",
                hint=f"Remove it to use {DEFAULTS['CAPACITY']}.",
                check_id="notifier.E005",
            )
        return value

    @cached_property
    def instance_id(self):
        """This process's UUID on the wire (E006 when INSTANCE_ID is not a UUID)."""
        value = self.options["INSTANCE_ID"]
        if value in (None, ""):
            return process_instance_id()
        if isinstance(value, uuid.UUID):
            return value
        try:
            return uuid.UUID(str(value))
        except ValueError:
            raise InvalidNotifierConfiguration(
                f"{self.name}['INSTANCE_ID'] must be a UUID, not {value!r}.",
                hint="Remove it to get a fresh id per process.",
                check_id="notifier.E006",
            ) from None

    @cached_property
    def signing(self):
        """The :class:`~notifier.signing.Keyring` publishers sign with and listeners verify
        with, or None when SIGNING_KEYS is unset (E030-E032 for bad keys; see
        :mod:`notifier.signing`)."""
        from .signing import Keyring, SigningConfigError

        try:
            return Keyring.from_options(self.options["SIGNING_KEYS"],
                                        self.options["SIGNING_KEY_ID"])
        except SigningConfigError as exc:
            raise InvalidNotifierConfiguration(
                f"{self.name}: {exc}", hint=exc.hint, check_id=exc.check_id
            ) from None


    @cached_property
    def readiness(self):
        """``"degraded-ok"`` or ``"strict"`` (E060 otherwise; see :mod:`notifier.health`)."""
        value = self.options["READINESS"]
        if value not in READINESS_MODES:
            raise InvalidNotifierConfiguration(
                f"{self.name}['READINESS'] must be one of {', '.join(map(repr, READINESS_MODES))}"
                f", not {value!r}.",
                hint='"degraded-ok" (the default) keeps every replica ready, reporting '
                '"degraded", through a Redis outage they all see; "strict" makes any backplane '
                "trouble a 503.",
                check_id="notifier.E060",
            )
        return value

    @cached_property
    def readiness_delays(self):
        """``(UNREADY_AFTER, READY_AFTER)`` in seconds (E061 unless numbers in 0..300)."""
        delays = []
        for key in ("UNREADY_AFTER", "READY_AFTER"):
            value = self.options[key]
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 <= value <= 300:
                raise InvalidNotifierConfiguration(
                    f"{self.name}[{key!r}] must be a number of seconds from 0 to 300, not "
                    f"{value!r}.",
                    hint=f"Remove it to use {DEFAULTS[key]:g} s.",
                    check_id="notifier.E061",
                )
            delays.append(float(value))
        return tuple(delays)


_process_id_lock = threading.Lock()
_process_id = (None, None)  # (pid, UUID): a forked worker must not inherit its parent's id


def process_instance_id():
    """Return this process's random instance id, made on first use (again after a fork)."""
    global _process_id
    with _process_id_lock:
        pid, value = _process_id
        if pid != os.getpid():
            _process_id = (os.getpid(), uuid.uuid4())
        return _process_id[1]


_cached = None


def get_settings():
    """Return the current :class:`NotifierSettings` snapshot, building it on first use."""
    global _cached
    snapshot = _cached
    if snapshot is None:
        snapshot = _cached = NotifierSettings.from_django()
    return snapshot


@receiver(setting_changed)
def reset_settings(*, setting, **kwargs):
    """Drop the snapshot when a test overrides a setting the notifier reads."""
    global _cached
    if setting in WATCHED_SETTINGS:
        _cached = None
