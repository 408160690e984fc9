"""Host lists in backplane URLs and settings: ``[user:password@]host:port[,host:port...]``,
the shape shared by ``redis+sentinel://`` and ``redis+cluster://``.

``what`` names the hosts in error messages ("sentinel", "cluster node").
"""

from urllib.parse import quote, unquote


def split_netloc(netloc):
    """``(username, password, hostlist)`` of ``[user[:password]@]hostlist``; an empty user
    or a missing password is None."""
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return username, password, hostlist


def parse_hosts(hostlist, *, default_port, what):
    """``((host, port), ...)`` of ``host[:port][,host[:port]...]`` (IPv6 in brackets);
    ``ValueError`` naming the bad item."""
    hosts = tuple(host_port(item, default_port=default_port, what=what)
                  for item in hostlist.split(",")) if hostlist else ()
    if not hosts:
        raise ValueError(f"the URL names no {what} (host:port[,host:port...])")
    return hosts


def host_port(item, *, default_port, what):
    item = item.strip()
    if item.startswith("["):
        host, bracket, port = item[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"bad {what} address {item!r}")
        port = port[1:]
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"bad {what} address {item!r}: no host")
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad {what} address {item!r}: the port must be 1-65535")
    return host, int(port)


def format_netloc(username, password, hosts):
    """The inverse of :func:`split_netloc` and :func:`parse_hosts` (password in clear)."""
    auth = ""
    if password is not None or username is not None:
        auth = quote(username or "", safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        auth += "@"
    return auth + ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in hosts)


def hosts_setting(hosts, key):
    """A settings list of ``"host:port"`` or ``(host, port)`` (or one comma-separated string)
    as the ``host:port,...`` of a URL; ``ValueError`` naming ``key`` when malformed."""
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    if not isinstance(hosts, (list, tuple)) or not hosts:
        raise ValueError(f"{key} must be a non-empty list of 'host:port' (or (host, port))")
    pairs = []
    for host in hosts:
        if isinstance(host, (list, tuple)) and len(host) == 2:
            host = f"[{host[0]}]:{host[1]}" if ":" in str(host[0]) else f"{host[0]}:{host[1]}"
        if not isinstance(host, str):
            raise ValueError(f"{key} has {host!r}, not 'host:port'")
        pairs.append(host.strip())
    return ",".join(pairs)
