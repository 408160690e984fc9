"""Who the client is behind a proxy: forwarded headers, believed from trusted proxies only.

::

    WEBCHAT_TRUSTED_PROXIES = ["127.0.0.0/8", "::1"]   # the default (a same-host proxy)

:class:`TrustedProxies` wraps the ASGI application (``webchat/asgi.py``). For a request
whose peer is in ``WEBCHAT_TRUSTED_PROXIES`` it sets ``scope["client"]`` to the right-most
``X-Forwarded-For`` entry that is not itself a trusted proxy (entries to its left were
written by the client and prove nothing), and ``scope["scheme"]`` from
``X-Forwarded-Proto``, so ``request.is_secure()``, ``REMOTE_ADDR``, the ``/metrics``
allowlist and the ``streamUrl`` scheme all see the real client. From any other peer the
``X-Forwarded-*`` and ``Forwarded`` headers are dropped before anything reads them.

Do not run daphne with ``--proxy-headers``: it believes the left-most entry, from anyone.
An empty list (``WEBCHAT_TRUSTED_PROXIES=`` in the environment) trusts no proxy. Read and
validated by :mod:`webchat.conf`; a bad entry is system check ``webchat.E024``.
"""

import ipaddress

from .conf import InvalidWebchatConfiguration, get_settings

_FORWARDED = frozenset({b"forwarded", b"x-forwarded-for", b"x-forwarded-proto",
                        b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip"})
_SCHEMES = {"http": {"https": "https", "http": "http"},
            "websocket": {"https": "wss", "wss": "wss", "http": "ws", "ws": "ws"}}


def trusted_networks() -> tuple:
    """The configured proxies' networks (webchat/conf.py's snapshot)."""
    try:
        return get_settings().trusted_proxies
    except InvalidWebchatConfiguration:
        return ()  # reported by webchat.E024; trusting nobody is the safe reading


def parse_address(value):
    """An ``ipaddress`` address from ``value`` (IPv4-mapped IPv6 unmapped), or None."""
    try:
        address = ipaddress.ip_address(str(value).strip().strip("[]"))
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address, networks) -> bool:
    return address is not None and any(address in network for network in networks)


def client_from_chain(peer, forwarded_for: list[str], networks):
    """The client's address: the right-most hop that is not a trusted proxy.

    ``peer`` is the TCP peer; ``forwarded_for`` the X-Forwarded-For entries, left to right.
    Returns an address, or None when the chain holds something that is not an address.
    """
    address = parse_address(peer) if peer is not None else None
    if not is_trusted(address, networks):
        return address
    for hop in reversed(forwarded_for):
        address = parse_address(hop)
        if not is_trusted(address, networks):
            return address
    return address  # every hop is a trusted proxy: the left-most one made the request


class TrustedProxies:
    """ASGI middleware: resolves the client and scheme of HTTP and WebSocket scopes."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] in _SCHEMES:
            scope = resolve(scope, trusted_networks())
        return await self.application(scope, receive, send)


def resolve(scope, networks):
    """A copy of ``scope`` with the real client and scheme (see the module docstring)."""
    headers = scope.get("headers") or ()
    peer = (scope.get("client") or (None,))[0]
    if not is_trusted(parse_address(peer) if peer is not None else None, networks):
        kept = [(name, value) for name, value in headers if name.lower() not in _FORWARDED]
        return scope if len(kept) == len(headers) else {**scope, "headers": kept}
    hops, proto = [], None
    for name, value in headers:
        name = name.lower()
        if name == b"x-forwarded-for":
            hops += [hop for hop in value.decode("latin-1").split(",") if hop.strip()]
        elif name == b"x-forwarded-proto" and proto is None:
            proto = value.decode("latin-1").split(",")[0].strip().lower()
    resolved = dict(scope)
    if hops:
        client = client_from_chain(peer, hops, networks)
        resolved["client"] = None if client is None else (str(client), 0)
    scheme = _SCHEMES[scope["type"]].get(proto or "")
    if scheme:
        resolved["scheme"] = scheme
    return resolved
