"""Who may read ``/metrics``: one optional settings dict, read on each scrape.

::

    WEBCHAT_METRICS = {
        "ENABLED": True,       # False: /metrics answers 404
        "ALLOWED_IPS": None,   # client IPs or networks allowed, e.g. ["10.0.0.0/8", "::1"];
                               # None: from anywhere (with DEBUG off, the token still counts)
        "TOKEN": None,         # a secret (16+ characters): "Authorization: Bearer <TOKEN>"
    }

With ``DEBUG`` off the token is required: without ``TOKEN`` set, or without the header,
the answer is 403; ``ALLOWED_IPS``, when set, also limits where the scrape may come from.
With ``DEBUG`` on the token opens it from anywhere, else ``ALLOWED_IPS`` decides (None:
everyone).

The client IP is ``scope["client"]``, which :class:`webchat.forwarded.TrustedProxies` has
resolved from ``X-Forwarded-For`` when the peer is a trusted proxy (never the spoofable
left-most entry). Environment variables in settings: ``WEBCHAT_METRICS_ENABLED``,
``WEBCHAT_METRICS_ALLOWED_IPS`` (comma-separated), ``WEBCHAT_METRICS_TOKEN``. Mistakes are
system check errors ``webchat.E020`` (not a dict or unknown keys), ``E021`` (ENABLED not a
bool), ``E022`` (an ALLOWED_IPS entry is not an IP or network), ``E023`` (TOKEN not a
string of at least 16 characters).
"""

import hmac
import ipaddress

from django.conf import settings
from django.core.checks import Error

from .forwarded import parse_address

DEFAULTS = {"ENABLED": True, "ALLOWED_IPS": None, "TOKEN": None}
TOKEN_MIN_LENGTH = 16


def _options():
    configured = getattr(settings, "WEBCHAT_METRICS", None)
    if configured is None:
        configured = {}
    if not isinstance(configured, dict):
        raise ValueError("not a dict")
    return {**DEFAULTS, **configured}


def _networks(entries):
    return [ipaddress.ip_network(str(entry).strip(), strict=False) for entry in entries]


def check_metrics_settings(app_configs=None, **kwargs):
    """System check of ``WEBCHAT_METRICS`` (registered in ``WebchatConfig.ready()``)."""
    hint = "See webchat/metrics_access.py for the keys and their defaults."
    configured = getattr(settings, "WEBCHAT_METRICS", None)
    if configured is None:
        return []
    if not isinstance(configured, dict):
        return [Error("WEBCHAT_METRICS must be a dict.", hint=hint, id="webchat.E020")]
    errors = []
    unknown = sorted(set(configured) - set(DEFAULTS))
    if unknown:
        errors.append(Error(f"WEBCHAT_METRICS has unknown key(s) {unknown}; known: "
                            f"{sorted(DEFAULTS)}.", hint=hint, id="webchat.E020"))
    options = {**DEFAULTS, **configured}
    if not isinstance(options["ENABLED"], bool):
        errors.append(Error(f"WEBCHAT_METRICS['ENABLED'] must be True or False, not "
                            f"{options['ENABLED']!r}.", hint=hint, id="webchat.E021"))
    allowed = options["ALLOWED_IPS"]
    if allowed is not None:
        if isinstance(allowed, str) or not isinstance(allowed, list | tuple):
            errors.append(Error("WEBCHAT_METRICS['ALLOWED_IPS'] must be a list of IPs or "
                                f"networks, not {allowed!r}.", hint=hint, id="webchat.E022"))
        else:
            for entry in allowed:
                try:
                    _networks([entry])
                except ValueError:
                    errors.append(Error(
                        f"WEBCHAT_METRICS['ALLOWED_IPS'] holds {entry!r}, not an IP address "
                        "or network.", hint='E.g. ["127.0.0.1", "10.0.0.0/8"].',
                        id="webchat.E022"))
    token = options["TOKEN"]
    if token is not None and (not isinstance(token, str) or len(token) < TOKEN_MIN_LENGTH):
        errors.append(Error(
            f"WEBCHAT_METRICS['TOKEN'] must be a string of at least {TOKEN_MIN_LENGTH} "
            "characters.", hint="Use a random value, e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`, or None.", id="webchat.E023"))
    return errors


def _bearer(scope):
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credential.strip()
    return None


def _client_allowed(scope, networks) -> bool:
    address = parse_address((scope.get("client") or (None,))[0] or "")
    return address is not None and any(address in network for network in networks)


def authorize(scope):
    """None when the caller of ``scope`` may read ``/metrics``, else ``(status, message)``."""
    try:
        options = _options()
    except ValueError:
        return 404, "metrics are not configured correctly (manage.py check)"
    if options["ENABLED"] is not True:
        return 404, "metrics are disabled"
    token = options["TOKEN"]
    has_token = False
    if isinstance(token, str) and token:
        given = _bearer(scope)
        has_token = given is not None and hmac.compare_digest(given.encode(), token.encode())
    if not settings.DEBUG and not has_token:
        if not (isinstance(token, str) and token):
            return 403, "metrics need WEBCHAT_METRICS['TOKEN'] when DEBUG is off"
        return 403, "metrics need 'Authorization: Bearer <WEBCHAT_METRICS['TOKEN']>'"
    if settings.DEBUG and has_token:
        return None
    allowed = options["ALLOWED_IPS"]
    if allowed is None:
        return None
    try:
        networks = _networks(allowed)
    except ValueError:
        return 403, "WEBCHAT_METRICS['ALLOWED_IPS'] is not valid (manage.py check)"
    if _client_allowed(scope, networks):
        return None
    return 403, "metrics are not available to this client (WEBCHAT_METRICS)"
