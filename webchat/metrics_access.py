"""Who may read ``/metrics``: one optional settings dict, read on each scrape.

::

    WEBCHAT_METRICS = {
        "ENABLED": True,       # False: /metrics answers 404
        "ALLOWED_IPS": None,   # client IPs or networks allowed, e.g. ["10.0.0.0/8", "::1"];
                               # None: everyone with DEBUG on, loopback only with DEBUG off
        "TOKEN": None,         # a secret (16+ characters): "Authorization: Bearer <TOKEN>"
                               # is allowed from anywhere
    }

The client IP is the ASGI peer: behind a proxy, that is the proxy, unless daphne runs with
``--proxy-headers`` (then ``X-Forwarded-For``). Environment variables in settings:
``WEBCHAT_METRICS_ENABLED``, ``WEBCHAT_METRICS_ALLOWED_IPS`` (comma-separated),
``WEBCHAT_METRICS_TOKEN``. Read and validated by :mod:`webchat.conf`; mistakes are system
check errors ``webchat.E020`` (not a dict or unknown keys), ``E021`` (ENABLED not a bool),
``E022`` (an ALLOWED_IPS entry is not an IP or network), ``E023`` (TOKEN not a string of at
least 16 characters).
"""

import hmac
import ipaddress

from django.conf import settings

from .conf import InvalidWebchatConfiguration, get_settings

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


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
    if token:
        given = _bearer(scope)
        if given is not None and hmac.compare_digest(given.encode(), token.encode()):
            return None
    try:
        networks = options.metrics_allowed_networks
    except InvalidWebchatConfiguration:
        return 403, "WEBCHAT_METRICS['ALLOWED_IPS'] is not valid (manage.py check)"
    if networks is None:
        if settings.DEBUG:
            return None
        networks = LOOPBACK
    client = (scope.get("client") or (None,))[0]
    try:
        address = ipaddress.ip_address(client)
    except (TypeError, ValueError):
        address = None
    if address is not None and address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address is not None and any(address in network for network in networks):
        return None
    return 403, "metrics are not available to this client (WEBCHAT_METRICS)"
