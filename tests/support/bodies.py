"""Huge request bodies, streamed: generated chunk by chunk, never held in memory.

::

    status, body, sent = stream_body("https://127.0.0.1:8443", "/healthz", 1024**3,
                                     chunked=True, context=front.ssl_context())

Sends the headers (``Content-Length: size``, or ``Transfer-Encoding: chunked``), then zeros
until the server answers (or ``size`` bytes went out), then reads the answer. Used by
tests/test_front_nginx.py and bench/front_body.py.
"""

import select
import socket
import ssl
from urllib.parse import urlsplit

CHUNK = 64 * 1024
TIMEOUT = 60


def stream_body(url, path, size, *, chunked, headers=(), context=None, timeout=TIMEOUT):
    """POST ``size`` bytes of zeros to ``path`` at ``url`` (http or, with ``context``,
    https). Returns ``(status, body, bytes sent)``."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    if parts.scheme == "https":
        sock = context.wrap_socket(sock, server_hostname=parts.hostname)
    with sock:
        head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}",
                "Content-Type: application/json", *headers]
        head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        zeros = bytes(CHUNK)
        frame = b"%x\r\n%s\r\n" % (CHUNK, zeros) if chunked else zeros
        sent, answer = 0, b""
        try:
            while sent < size and not (answer := _answer_so_far(sock, timeout)):
                sock.sendall(frame)
                sent += CHUNK
            if sent >= size and chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: read what it said
        return (*_read_response(sock, answer), sent)


def _answer_so_far(sock, timeout) -> bytes:
    """Data the server sent already, without blocking (b"" if none). TLS 1.3 session
    tickets make the socket readable too: they are not an answer."""
    pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
    if not (pending or select.select([sock], [], [], 0)[0]):
        return b""
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return b""
    finally:
        sock.setblocking(True)
        sock.settimeout(timeout)


def _read_response(sock, data: bytes) -> tuple[int, bytes]:
    """``(status, body)`` of one HTTP/1.1 answer with a Content-Length."""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise AssertionError(f"the server closed the connection after {data!r}")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return status, body[:length]
