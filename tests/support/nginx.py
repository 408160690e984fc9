"""Debian's nginx in front of a test cluster's replicas, as in production (deploy/nginx.py).

::

    cluster = Cluster(database="postgres", front=True).start(2)   # or front={...limits}
    cluster.front.url                  # https://127.0.0.1:<port>: every replica, balanced
    cluster.url(1)                     # https://127.0.0.1:<port>: replica 1 only, through nginx
    cluster.front.client_env()         # NODE_EXTRA_CA_CERTS for Node clients
    cluster.front.chromium_flags()     # Chromium trusts the front's key, and nothing else
    cluster.front.ssl_context()        # for Python clients

Its own nginx process (``nginx -p <temporary prefix> -c <generated conf>``, ``daemon off``)
on free ports, with a certificate from a local CA (deploy/tls.py); stopped by pid. Never the
system service, never /etc/nginx. A missing nginx fails saying how to install it
(``./scripts/test`` does), never skips.
"""

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from deploy.nginx import FrontConfig, app_limits
from deploy.tls import make_certificates, spki_sha256

from .processes import stop_process

NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
STARTUP_TIMEOUT = 20  # seconds
BIND_ATTEMPTS = 5  # another process may take a port between picking it and nginx binding it


class NginxMissing(AssertionError):
    """nginx is not installed: the front cannot run."""


def require_nginx() -> str:
    if not (os.path.isfile(NGINX) and os.access(NGINX, os.X_OK)):
        raise NginxMissing(
            f"{NGINX} is missing: the front tests need Debian's nginx. ./scripts/test "
            "installs it (apt-get install -y nginx); the system service is never used."
        )
    return NGINX


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class Front:
    """One nginx in front of ``replica_addresses`` (``host:port``), with a pinned listener
    per replica. ``options`` are FrontConfig fields (limits), over the app's body limits."""

    def __init__(self, replica_addresses, **options):
        self.binary = require_nginx()
        self.replica_addresses = tuple(replica_addresses)
        self.options = options
        self.prefix = Path(tempfile.mkdtemp(prefix="webchat-front-"))
        self.certificates = make_certificates(self.prefix / "tls")
        self.process = None
        self.port = None
        self.pinned_ports = []

    def start(self):
        """Start nginx on free ports; return once every listener accepts connections."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        for _ in range(BIND_ATTEMPTS):
            self.port = _free_port()
            self.pinned_ports = [_free_port() for _ in self.replica_addresses]
            config = FrontConfig(
                prefix=self.prefix, listen=f"127.0.0.1:{self.port}",
                replicas=self.replica_addresses,
                pinned=tuple(f"127.0.0.1:{port}" for port in self.pinned_ports),
                certificate=self.certificates.certificate,
                certificate_key=self.certificates.key,
                **{**app_limits(), **self.options},
            )  # fmt: skip
            self.config_path = config.write()
            self.process = subprocess.Popen(
                [self.binary, "-p", str(self.prefix), "-c", str(self.config_path),
                 "-e", str(self.error_log)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            if self._wait_until_up():
                return self
        raise RuntimeError(f"nginx could not bind free ports in {BIND_ATTEMPTS} attempts:\n"
                           + self.log_tail())

    def _wait_until_up(self) -> bool:
        """True once every listener accepts; False when nginx exited on a taken port."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not all(_accepts(port) for port in (self.port, *self.pinned_ports)):
            if self.process.poll() is not None:
                if "Address already in use" in self.log_tail():
                    return False
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n"
                                   + self.log_tail())
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not listen within {STARTUP_TIMEOUT} s:\n"
                                   + self.log_tail())
            time.sleep(0.05)
        return True

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def pinned_url(self, index) -> str:
        return f"https://127.0.0.1:{self.pinned_ports[index]}"

    def pids(self) -> list[int]:
        """nginx's master and its workers (children of the master), by /proc."""
        pids = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    pids.append(int(entry.name))
        return pids

    def client_env(self) -> dict:
        """Environment for Node clients: trust the local CA."""
        return {"NODE_EXTRA_CA_CERTS": str(self.certificates.ca)}

    def chromium_flags(self) -> list[str]:
        """Chromium flags that trust this front's key only (not every certificate error)."""
        spki = spki_sha256(self.certificates.certificate)
        return [f"--ignore-certificate-errors-spki-list={spki}"]

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificates.ca))

    def log_tail(self, lines=30) -> str:
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self):
        """SIGTERM (nginx's fast shutdown: open sockets are closed, not waited for), then
        SIGKILL of the master and its workers after 10 s; by pid. Removes the prefix."""
        if self.process is not None and self.process.poll() is None:
            workers = self.pids()[1:]
            if stop_process(self.process, 10):
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.prefix, ignore_errors=True)
