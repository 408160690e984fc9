"""TLS to Redis: ``BACKPLANE["TLS"]``, applied to ``rediss://``, ``rediss+sentinel://`` and
``rediss+cluster://``.

::

    BACKPLANE["TLS"] = {
        "CA_CERTS": "/etc/redis/ca.pem",     # the CA that signed the server's certificate
        "CERTFILE": "/etc/redis/client.pem",  # client certificate (tls-auth-clients yes)
        "KEYFILE": "/etc/redis/client.key",   # its key (may be inside CERTFILE)
        "KEY_PASSWORD": None,                 # the key's passphrase, if it is encrypted
        "CHECK_HOSTNAME": True,               # the certificate must name the URL's host
    }

Every connection the transport makes gets these (the sentinels' and the master's with
``rediss+sentinel://``). :func:`check_files` loads them as Python's ``ssl`` will, so a
missing file, a non-PEM file or a wrong passphrase fails ``manage.py check``
(``notifier.E051``), and TLS settings with a URL that is not TLS fail with ``E052``.
"""

import os
import ssl
from dataclasses import dataclass, field

#: The URL schemes whose connections are TLS.
TLS_SCHEMES = ("rediss", "rediss+sentinel", "rediss+cluster")

KEYS = ("CA_CERTS", "CERTFILE", "KEYFILE", "KEY_PASSWORD", "CHECK_HOSTNAME")

HINT = ('E.g. {"CA_CERTS": "/etc/redis/ca.pem", "CERTFILE": "/etc/redis/client.pem", '
        '"KEYFILE": "/etc/redis/client.key", "KEY_PASSWORD": None, "CHECK_HOSTNAME": True}; '
        "every key is optional.")


def is_tls_url(url):
    """Whether ``url``'s connections are TLS (``rediss://``, ``rediss+sentinel://`` or
    ``rediss+cluster://``)."""
    return isinstance(url, str) and url.partition("://")[0].lower() in TLS_SCHEMES


@dataclass(frozen=True)
class TLSConfig:
    """The client side of TLS to Redis; every field optional (system CAs by default)."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    key_password: str | None = field(default=None, repr=False)  # never in a repr or log
    check_hostname: bool = True

    def redis_kwargs(self):
        """The ``ssl_*`` keyword arguments of redis-py's (Sentinel)SSLConnection."""
        kwargs = {"ssl_cert_reqs": "required", "ssl_check_hostname": self.check_hostname}
        for name in ("ca_certs", "certfile", "keyfile"):
            value = getattr(self, name)
            if value is not None:
                kwargs[f"ssl_{name}"] = value
        if self.key_password is not None:
            kwargs["ssl_password"] = self.key_password
        return kwargs


def parse(options):
    """The :class:`TLSConfig` the ``TLS`` dict stands for (None for None); ``ValueError``
    naming the problem."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise ValueError(f"it must be a dict, not {type(options).__name__}")
    unknown = sorted(str(key) for key in options if key not in KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}")
    values = {}
    for key in ("CA_CERTS", "CERTFILE", "KEYFILE", "KEY_PASSWORD"):
        value = options.get(key)
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{key} must be a non-empty string (a path), not {value!r}"
                             if key != "KEY_PASSWORD" else f"{key} must be a non-empty string")
        values[key.lower()] = value
    check_hostname = options.get("CHECK_HOSTNAME", True)
    if not isinstance(check_hostname, bool):
        raise ValueError(f"CHECK_HOSTNAME must be True or False, not {check_hostname!r}")
    if values["keyfile"] and not values["certfile"]:
        raise ValueError("KEYFILE is set without CERTFILE (the client certificate)")
    if values["key_password"] and not values["certfile"]:
        raise ValueError("KEY_PASSWORD is set without CERTFILE/KEYFILE")
    return TLSConfig(check_hostname=check_hostname, **values)


def check_files(config):
    """Load ``config``'s files as a connection will; return a list of problems (strings)."""
    problems = []
    for key, path in (("CA_CERTS", config.ca_certs), ("CERTFILE", config.certfile),
                      ("KEYFILE", config.keyfile)):
        if path is None:
            continue
        if not os.path.isfile(path):
            problems.append(f"{key} {path!r} does not exist (or is not a file)")
        elif not os.access(path, os.R_OK):
            problems.append(f"{key} {path!r} is not readable by this process "
                            f"(uid {os.getuid()})")
    if problems:
        return problems
    context = ssl.create_default_context()
    if config.ca_certs is not None:
        try:
            context.load_verify_locations(cafile=config.ca_certs)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(f"CA_CERTS {config.ca_certs!r} holds no PEM certificate ({exc})")
    if config.certfile is not None:
        try:
            # The passphrase as a callable: a key that needs one and has none fails here
            # rather than prompting on the terminal.
            context.load_cert_chain(config.certfile, config.keyfile,
                                    password=lambda: config.key_password or "")
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(
                f"cannot load the client certificate {config.certfile!r}"
                + (f" with KEYFILE {config.keyfile!r}" if config.keyfile else "")
                + f": {exc}; check KEY_PASSWORD (wrong or missing passphrase) and that the "
                "key belongs to the certificate")
    return problems
