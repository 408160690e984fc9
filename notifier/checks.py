"""System checks for ``BACKPLANE`` (or ``WEBCHAT_NOTIFIER``): a bad setting fails
``manage.py check``, not the first publish. Registered in
:meth:`notifier.apps.NotifierConfig.ready`.

* ``notifier.E001`` unknown backend; ``E002`` no Redis URL for a backend that needs one;
  ``E003`` invalid URL; ``E004`` empty channel; ``E005`` bad capacity; ``E006`` instance id
  not a UUID; ``E007`` the setting is not a dict; ``E008`` a malformed ``redis+sentinel://``
  URL or ``SENTINEL`` dict (or both URL and SENTINEL set); ``E009`` a malformed
  ``redis+cluster://`` URL or ``CLUSTER`` dict (a database other than 0, or CLUSTER beside
  URL or SENTINEL).
* ``notifier.E030`` SIGNING_KEYS malformed (not a dict or "id:secret,..." string, a bad key
  id); ``E031`` a signing secret empty or shorter than 32 bytes; ``E032`` SIGNING_KEY_ID not
  one of SIGNING_KEYS (or missing while there are several keys, or set without keys).
* ``notifier.E010`` Redis does not answer within 2 s (strict startup); ``E011`` it refuses
  the user or password, ``E012`` the TLS handshake fails, ``E013`` the ACL denies a command
  or channel the backplane needs (:mod:`notifier.failures`, :mod:`notifier.preflight`).
* ``notifier.E050`` a malformed ``TLS`` dict; ``E051`` a TLS file missing, unreadable or
  not loadable (wrong ``KEY_PASSWORD``); ``E052`` ``TLS`` with a URL that is not TLS.
* ``notifier.W010`` a Redis URL with a password that Django's active exception reporter
  filter would show in error reports (:mod:`notifier.reporting`).
* ``notifier.E060`` READINESS is not "degraded-ok" or "strict"; ``E061`` UNREADY_AFTER or
  READY_AFTER is not a number of seconds from 0 to 300.
* ``notifier.E020`` the installed redis-py is older than the notifier's floor (the message
  names both); ``E021`` ``DEPENDENCY_FAST_PATHS`` is not a bool.
* ``notifier.W001`` the Redis backend with a cross-process channel layer in a server process:
  every server's listener re-sends each notification to all consumers, so they get it once
  per server. Not raised in the bridge (``run_backplane_listener``), the one process that
  re-sends into such a layer. ``W002`` unknown keys (typos). ``W003`` both ``BACKPLANE`` and
  ``WEBCHAT_NOTIFIER`` are set (the second is ignored). ``W004`` the bridge with a
  process-local channel layer: what it re-sends reaches no consumer.
"""

import contextlib
import contextvars

from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .compat import SETTING_NAME as SETTING_NAME_FAST_PATHS
from .conf import get_settings
from .exceptions import BackplaneRefused, BackplaneUnavailable, InvalidNotifierConfiguration

TAG = "notifier"

#: Seconds the connection check waits for Redis.
CONNECTION_TIMEOUT = 2.0

#: Channel layers that deliver across processes (module prefixes of their BACKEND paths).
CROSS_PROCESS_LAYERS = ("channels_redis.", "channels_rabbitmq.", "channels_postgres.")

# Validated in this order: a later property may depend on an earlier one (url on backend).
_PROPERTIES = ("backend_class", "url", "tls", "channel", "capacity", "instance_id", "signing",
               "readiness", "readiness_delays")


# True while the bridge command runs its checks (see bridge_process).
_in_bridge = contextvars.ContextVar("notifier_bridge_checks", default=False)


@contextlib.contextmanager
def bridge_process():
    """Run the checks inside as the bridge (``run_backplane_listener``) sees them: the one
    listener of a cross-process channel layer, so W001 does not apply but W004 does."""
    token = _in_bridge.set(True)
    try:
        yield
    finally:
        _in_bridge.reset(token)


def _error(exc, name):
    return checks.Error(str(exc), hint=exc.hint, obj=name, id=exc.check_id)


def check_settings(app_configs=None, **kwargs):
    """Validate every key of ``BACKPLANE``; warn about a doubling channel layer."""
    notifier_settings = get_settings()
    name = notifier_settings.name
    try:
        _ = notifier_settings.options
    except InvalidNotifierConfiguration as exc:
        return [_error(exc, name)]
    messages = []
    seen = set()
    for name in _PROPERTIES:
        try:
            getattr(notifier_settings, name)
        except InvalidNotifierConfiguration as exc:
            if exc.check_id not in seen:
                seen.add(exc.check_id)
                messages.append(_error(exc, name))
    unknown = notifier_settings.unknown_keys
    if unknown:
        messages.append(checks.Warning(
            f"{name} has unknown key(s) {', '.join(map(repr, unknown))}; they are "
            "ignored.",
            hint="The keys are BACKEND, URL, SENTINEL, CLUSTER, TLS, CHANNEL, CAPACITY, "
            "INSTANCE_ID, SIGNING_KEYS, SIGNING_KEY_ID, READINESS, UNREADY_AFTER and "
            "READY_AFTER.",
            obj=name,
            id="notifier.W002",
        ))
    if notifier_settings.shadowed:
        messages.append(checks.Warning(
            f"Both {name} and {notifier_settings.shadowed} are set: {name} is used and "
            f"{notifier_settings.shadowed} is ignored.",
            hint=f"Remove {notifier_settings.shadowed}.",
            obj=notifier_settings.shadowed,
            id="notifier.W003",
        ))
    if "notifier.E001" not in seen and notifier_settings.backend_class.requires_url:
        messages.extend(_layer_warnings())
    return messages


def _layer_warnings():
    layer = (getattr(django_settings, "CHANNEL_LAYERS", None) or {}).get("default") or {}
    backend = str(layer.get("BACKEND", ""))
    cross_process = backend.startswith(CROSS_PROCESS_LAYERS)
    if _in_bridge.get():
        if cross_process or not backend:
            return []
        return [checks.Warning(
            f"run_backplane_listener re-sends notifications into the process-local channel "
            f"layer {backend!r}: no consumer listens on it in this process.",
            hint="Give the bridge the cross-process layer (channels_redis) your servers' "
            "consumers listen on.",
            obj="CHANNEL_LAYERS",
            id="notifier.W004",
        )]
    if not cross_process:
        return []
    return [checks.Warning(
        f"The Redis notifier is combined with the cross-process channel layer {backend!r}: "
        "each server process's listener re-sends every notification to all consumers, so "
        "they receive it once per server process.",
        hint="Use the process-local layer (notifier.layers.LocalChannelLayer) with the Redis "
        "notifier in server processes, or the memory notifier with a cross-process layer and "
        "one run_backplane_listener bridge (see docs/notifier.md).",
        obj="CHANNEL_LAYERS",
        id="notifier.W001",
    )]


def check_dependencies(app_configs=None, **kwargs):
    """The Redis backend refuses a redis-py below the floor; the fast-path switch is a bool."""
    from .compat import fast_paths_setting, redis_py

    messages = []
    try:
        fast_paths_setting()
    except InvalidNotifierConfiguration as exc:
        messages.append(checks.Error(str(exc), hint=exc.hint, obj=SETTING_NAME_FAST_PATHS,
                                     id=exc.check_id))
    try:
        needs_redis = get_settings().backend_class.requires_url
    except ImproperlyConfigured:
        needs_redis = False  # check_settings reports it
    too_old = redis_py.below_floor()
    if needs_redis and too_old:
        messages.append(checks.Error(
            too_old,
            hint=f"Upgrade it: pip install 'redis>={redis_py.FLOOR_TEXT}'.",
            obj=get_settings().name,
            id="notifier.E020",
        ))
    return messages


def check_connection(app_configs=None, **kwargs):
    """Strict startup for ``manage.py check`` (and every command that runs checks): with a
    transport that needs one, Redis must answer within 2 s."""
    notifier_settings = get_settings()
    try:
        if not notifier_settings.backend_class.requires_url:
            return []
        notifier = notifier_settings.backend_class.from_settings(notifier_settings)
    except ImproperlyConfigured:
        return []  # check_settings or check_dependencies reports it
    try:
        notifier.verify(CONNECTION_TIMEOUT)
    except BackplaneRefused as exc:  # answers, but refuses the password, TLS or ACL
        return [checks.Error(str(exc), obj=notifier_settings.name, id=exc.check_id)]
    except BackplaneUnavailable as exc:
        return [checks.Error(
            str(exc),
            hint="A process with the Redis notifier refuses to start without Redis.",
            obj=notifier_settings.name,
            id="notifier.E010",
        )]
    return []


def check_tls(app_configs=None, **kwargs):
    """The TLS files load as a connection will load them (E051): missing, unreadable, not
    PEM, or a key whose passphrase is wrong fail ``check``, not the first connection."""
    from .tls import check_files

    notifier_settings = get_settings()
    try:
        config = notifier_settings.tls
    except ImproperlyConfigured:
        return []  # check_settings reports it
    if config is None:
        return []
    return [checks.Error(
        f"{notifier_settings.name}['TLS']: {problem}.",
        hint="Point it at a PEM file this process can read.",
        obj=notifier_settings.name,
        id="notifier.E051",
    ) for problem in check_files(config)]


def check_error_reports(app_configs=None, **kwargs):
    """W010: a Redis URL with a password that Django's error reports (the technical 500
    page, the mails to ADMINS) would show through the active exception reporter filter."""
    from .reporting import exposed_settings

    exposed = exposed_settings()
    if not exposed:
        return []
    return [checks.Warning(
        f"Django's error reports would show the Redis password of {', '.join(exposed)}: the "
        "exception reporter filter hides settings by name (API, KEY, PASS, SECRET, TOKEN...), "
        "not passwords inside URLs.",
        hint='Set DEFAULT_EXCEPTION_REPORTER_FILTER = "notifier.reporting.'
        'ExceptionReporterFilter" (or make your filter a subclass of it).',
        obj="DEFAULT_EXCEPTION_REPORTER_FILTER",
        id="notifier.W010",
    )]
