"""Name a Redis failure for what it is: authentication, TLS, or a missing ACL permission.

redis-py reports a wrong password as a ``ConnectionError`` subclass, a failed TLS handshake
as a ``ConnectionError`` wrapping an ``ssl.SSLError``, and ``NOPERM`` as a reply error. Left
as they are, the first two read like "Redis is not there" and the last like a bug.
:func:`explain` turns each into a :class:`~notifier.exceptions.BackplaneRefused` subclass
whose message names the user, command or channel, and the setting to fix; any other error
is returned unchanged (a connection problem: retry with backoff).
"""

import re
import ssl

import redis
from redis.exceptions import AuthenticationError, NoPermissionError

from .conf import mask_url
from .exceptions import (
    BackplaneAuthenticationFailed,
    BackplanePermissionDenied,
    BackplaneRefused,
    BackplaneTLSFailed,
)

_AUTH_TEXT = ("WRONGPASS", "NOAUTH", "invalid username-password pair", "invalid password",
              "Authentication required")

# Redis 6/7: "this user has no permissions to run the 'client|setname' command",
# "... to access one of the channels used as arguments", "... one of the keys ...".
_COMMAND = re.compile(r"run the '([^']+)' command")

# (text in the SSL error, hint), first match wins.
_TLS_HINTS = (
    (("Hostname mismatch", "IP address mismatch"),
     "the server's certificate does not name the host in the URL: connect by a name the "
     "certificate holds (or set TLS CHECK_HOSTNAME to False)"),
    (("CERTIFICATE_VERIFY_FAILED",),
     "the server's certificate is not signed by a CA this client trusts: set TLS CA_CERTS "
     "to the CA that signed it (and check the host name)"),
    (("CERTIFICATE_REQUIRED", "certificate required"),
     "the server requires a client certificate (tls-auth-clients): set TLS CERTFILE and "
     "KEYFILE"),
    (("UNKNOWN_CA", "unknown ca", "BAD_CERTIFICATE", "bad certificate", "CERTIFICATE_UNKNOWN"),
     "the server refused this client's certificate: TLS CERTFILE must be signed by a CA in "
     "the server's tls-ca-cert-file"),
    (("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "record layer failure"),
     "the server does not speak TLS on this port: use its tls-port (or redis:// for a "
     "plain one)"),
    (("PEM lib", "BAD_DECRYPT", "bad decrypt", "KEY_VALUES_MISMATCH"),
     "cannot load the client key: check TLS KEYFILE and KEY_PASSWORD"),
    # A synchronous client often reads the server's close, not its alert.
    (("EOF occurred in violation of protocol", "UNEXPECTED_EOF"),
     "the server closed the connection in the TLS handshake: it probably requires a client "
     "certificate (tls-auth-clients) or refused this client's certificate: set TLS CERTFILE "
     "and KEYFILE, signed by a CA in the server's tls-ca-cert-file"),
)
_TLS_DEFAULT_HINT = "check TLS CA_CERTS, CERTFILE/KEYFILE and the host name"


def username(url):
    """The ACL user ``url`` logs in as (``default`` when it names none)."""
    try:
        if url.partition("://")[0].lower().endswith("+sentinel"):
            from .sentinel import parse_url

            return parse_url(url).username or "default"
        return redis.connection.parse_url(url).get("username") or "default"
    except Exception:
        return "default"


def _chain(error):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _ssl_error(error):
    for link in _chain(error):
        if isinstance(link, ssl.SSLError):
            return link
    return None


def explain(error, url, *, command=None, channels=(), user=None, where=None):
    """Return ``error`` as a :class:`BackplaneRefused` subclass when it is an
    authentication, TLS or permission failure, else ``error`` itself.

    ``url``: the Redis URL (masked in the message). ``command``/``channels``: what was
    being done, named when Redis's ``NOPERM`` says "one of the channels". ``user`` and
    ``where`` replace the URL's user and the masked URL (a sentinel's own).
    """
    if isinstance(error, BackplaneRefused):
        return error
    where = where or mask_url(url)
    user = user or username(url)
    text = str(error)
    if isinstance(error, AuthenticationError) or any(t in text for t in _AUTH_TEXT):
        return _chained(BackplaneAuthenticationFailed(
            f"authentication failed for user {user!r}",
            detail=text, url=where,
            hint=f"check the password (and user) in the URL, and that the ACL user is on "
            f"and has that password (ACL GETUSER {user})"), error)
    tls_error = _ssl_error(error)
    if tls_error is not None or "[SSL" in text or "(_ssl.c:" in text:
        detail = str(tls_error) if tls_error is not None else text
        hint = next((hint for needles, hint in _TLS_HINTS
                     if any(needle in detail or needle in text for needle in needles)),
                    _TLS_DEFAULT_HINT)
        return _chained(BackplaneTLSFailed("TLS handshake failed", detail=detail,
                                           url=where, hint=hint), error)
    if isinstance(error, NoPermissionError) or text.startswith("NOPERM"):
        return _chained(_permission(error, text, user, where, command, channels), error)
    return error


def _permission(error, text, user, where, command, channels):
    match = _COMMAND.search(text)
    if match:
        denied = match.group(1).upper().replace("|", " ")
        return BackplanePermissionDenied(
            f"user {user!r} lacks permission for the {denied} command", detail=text,
            url=where, hint=f"grant it: ACL SETUSER {user} +{match.group(1).lower()}")
    if "channel" in text and channels:
        names = ", ".join(repr(c) for c in channels)
        what = f"channel {names}" if len(channels) == 1 else f"one of the channels {names}"
        grants = " ".join(f"&{c}" for c in channels)
        return BackplanePermissionDenied(
            f"user {user!r} lacks permission for {command or 'a command'} on {what}",
            detail=text, url=where, hint=f"grant it: ACL SETUSER {user} {grants}")
    return BackplanePermissionDenied(
        f"user {user!r} lacks permission for {command or 'a command'}", detail=text,
        url=where, hint=f"grant what the backplane needs (README, \"ACL user\"): "
        f"ACL SETUSER {user} ...")


def _chained(explained, error):
    explained.__cause__ = error
    return explained
