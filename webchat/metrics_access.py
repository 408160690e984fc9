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
``WEBCHAT_METRICS_ALLOWED_IPS`` (comma-separated), ``WEBCHAT_METRICS_TOKEN``. Read and
validated by :mod:`webchat.conf`; mistakes are system check errors ``webchat.E020`` (not a
dict or unknown keys), ``E021`` (ENABLED not a bool), ``E022`` (an ALLOWED_IPS entry is not
an IP or network), ``E023`` (TOKEN not a string of at least 16 characters).
"""

import hmac

from django.conf import settings

from .conf import InvalidWebchatConfiguration, get_settings
from .forwarded import parse_address


def _bearer(scope):
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credential.strip()
    return None


def authorize(scope):
    """None when the caller of ``scope`` may read ``/metrics``, else ``(status, message)``."""
    options = get_settings()
    try:
        enabled, token = options.metrics_enabled, options.metrics_token
    except InvalidWebchatConfiguration:
        return 404, "metrics are not configured correctly (manage.py check)"
    if not enabled:
        return 404, "metrics are disabled"
    given = _bearer(scope) if token else None
    has_token = given is not None and hmac.compare_digest(given.encode(), token.encode())
    if not settings.DEBUG and not has_token:
        if not token:
            return 403, "metrics need WEBCHAT_METRICS['TOKEN'] when DEBUG is off"
        return 403, "metrics need 'Authorization: Bearer <WEBCHAT_METRICS['TOKEN']>'"
    if settings.DEBUG and has_token:
        return None
    try:
        networks = options.metrics_allowed_networks
    except InvalidWebchatConfiguration:
        return 403, "WEBCHAT_METRICS['ALLOWED_IPS'] is not valid (manage.py check)"
    if networks is None:
        return None
    address = parse_address((scope.get("client") or (None,))[0] or "")
    if address is not None and any(address in network for network in networks):
        return None
    return 403, "metrics are not available to this client (WEBCHAT_METRICS)"
