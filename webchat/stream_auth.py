"""Where the stream's token comes from: ``?t=`` in the URL or ``Sec-WebSocket-Protocol``.

directlinejs opens the ``streamUrl`` as it is, so its token rides in the query. A client
that can set the handshake's subprotocols (a browser's ``new WebSocket(url, [token])``,
the seed's own clients) can keep the token out of the URL, and so out of proxies' access
logs: ``Sec-WebSocket-Protocol: <token>``, as the seed accepts it. A browser fails the
handshake unless the server echoes one of the protocols it offered, so the value that
carried the token is echoed, on refusals too (else the close code never reaches it).
"""

from urllib.parse import parse_qs

#: The query parameter of the streamUrl that carries the token.
TOKEN_PARAM = "t"


def offered_token(scope) -> str | None:
    """The first offered subprotocol shaped like a JWT (``header.claims.signature``)."""
    for value in scope.get("subprotocols") or ():
        value = value.strip()
        if value.count(".") == 2:
            return value
    return None


def stream_token(scope, query: dict | None = None) -> str:
    """The token of a stream handshake: ``?t=`` first (as the seed reads it), else the
    subprotocol; "" if neither has one."""
    if query is None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), True)
    return (query.get(TOKEN_PARAM) or [""])[0] or offered_token(scope) or ""
