"""TLS for tests: a throwaway PKI made with ``openssl``, and a private TLS ``redis-server``.

::

    pki = make_pki(directory)            # ca.pem, server.pem/.key, client.pem/.key (encrypted)
    server = TLSRedisServer.start_for(self, pki, auth_clients=True)
    server.url                           # rediss://127.0.0.1:<tls port>/0
    server.tls_setting()                 # BACKPLANE["TLS"] for a trusted client

The server certificate names only IP 127.0.0.1 (so ``rediss://localhost`` is a host name
mismatch); a second CA signs ``rogue.pem``, a client certificate the server does not trust.
"""

import os
import shutil
import subprocess
import tempfile
import time
import unittest
from dataclasses import dataclass

import redis

from .redis_server import RedisServer, free_port

KEY_PASSWORD = "client-key-passphrase"


def requires_tls_tools(test_item):
    """Skip unless ``openssl`` and a ``redis-server`` built with TLS are installed."""
    reason = None
    if not shutil.which("openssl"):
        reason = "openssl is not installed"
    elif not shutil.which("redis-server"):
        reason = "redis-server is not installed"
    else:
        probe = subprocess.run(["redis-server", "--tls-port", "0", "--test-memory", "0"],
                               capture_output=True, text=True)
        if "not built with TLS" in (probe.stdout + probe.stderr):
            reason = "redis-server is not built with TLS"
    return unittest.skipIf(reason, reason)(test_item)


@dataclass(frozen=True)
class PKI:
    directory: str

    def path(self, name):
        return os.path.join(self.directory, name)

    @property
    def ca(self):
        return self.path("ca.pem")


def _openssl(directory, *args):
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _ca(directory, name):
    _openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash")


def _leaf(directory, name, ca, extensions, *, password=None):
    key_args = ["-passout", f"pass:{password}"] if password else ["-nodes"]
    _openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             *key_args, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    with open(os.path.join(directory, f"{name}.ext"), "w") as file:
        file.write(extensions + "\nauthorityKeyIdentifier=keyid\n"
                   "basicConstraints=critical,CA:FALSE\n")
    _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
             f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext")


def make_pki(directory):
    """A CA, a server certificate for 127.0.0.1, a client certificate whose key is
    encrypted with :data:`KEY_PASSWORD`, and ``rogue``: a client of another CA."""
    _ca(directory, "ca")
    _leaf(directory, "server", "ca", "subjectAltName=IP:127.0.0.1\n"
          "extendedKeyUsage=serverAuth,clientAuth")
    _leaf(directory, "client", "ca", "extendedKeyUsage=clientAuth", password=KEY_PASSWORD)
    _ca(directory, "other-ca")
    _leaf(directory, "rogue", "other-ca", "extendedKeyUsage=clientAuth")
    return PKI(directory)


def server_tls_args(pki, *, auth_clients=True):
    """redis-server's TLS options (the server certificate also serves as its client one,
    for a sentinel talking to a TLS master)."""
    return ["--tls-cert-file", pki.path("server.pem"), "--tls-key-file", pki.path("server.key"),
            "--tls-ca-cert-file", pki.ca, "--tls-auth-clients", "yes" if auth_clients else "no"]


class TLSRedisServer(RedisServer):
    """A private ``redis-server`` that speaks only TLS on :attr:`port`."""

    def __init__(self, pki, *, auth_clients=True, port=None):
        super().__init__(port)
        self.pki = pki
        self.auth_clients = auth_clients

    @classmethod
    def start_for(cls, test_case, pki, **kwargs):
        server = cls(pki, **kwargs)
        test_case.addCleanup(server.cleanup)
        server.start()
        return server

    @property
    def url(self):
        return f"rediss://127.0.0.1:{self.port}/0"

    def tls_setting(self, **overrides):
        """``BACKPLANE["TLS"]`` for a client this server trusts."""
        return {"CA_CERTS": self.pki.ca, "CERTFILE": self.pki.path("client.pem"),
                "KEYFILE": self.pki.path("client.key"), "KEY_PASSWORD": KEY_PASSWORD,
                **overrides}

    def client(self, **kwargs):
        return redis.Redis.from_url(
            self.url, ssl_ca_certs=self.pki.ca, ssl_certfile=self.pki.path("client.pem"),
            ssl_keyfile=self.pki.path("client.key"), ssl_password=KEY_PASSWORD, **kwargs)

    def start(self, timeout=10.0):
        if self.process is not None:
            raise RuntimeError(f"redis-server already running as pid {self.pid}")
        self.process = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind",
             "127.0.0.1", *server_tls_args(self.pki, auth_clients=self.auth_clients),
             "--save", "", "--appendonly", "no", "--dir", self._dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client(socket_timeout=0.5, socket_connect_timeout=0.5) as client:
                    client.ping()
                return self
            except (redis.RedisError, OSError):
                if self.process.poll() is not None:
                    self.process = None
                    raise RuntimeError(f"TLS redis-server on port {self.port} exited") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"TLS redis-server on port {self.port} is silent") from None
                time.sleep(0.05)


class TLSSentinel:
    """One ``redis-server --sentinel`` speaking only TLS, to its clients and to the master
    (``tls-replication``), monitoring a :class:`TLSRedisServer` as ``service`` (quorum 1)."""

    def __init__(self, pki, master, service):
        self.pki = pki
        self.service = service
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="test-tls-sentinel-")
        self.config = os.path.join(self._dir, "sentinel.conf")
        tls = server_tls_args(pki)
        with open(self.config, "w") as file:
            file.write(
                f"port 0\ntls-port {self.port}\nbind 127.0.0.1\ndir {self._dir}\n"
                + "".join(f"{tls[i][2:]} {tls[i + 1]}\n" for i in range(0, len(tls), 2))
                + "tls-replication yes\nsentinel resolve-hostnames no\n"
                f"sentinel monitor {service} 127.0.0.1 {master.port} 1\n"
            )
        self.process = None

    @classmethod
    def start_for(cls, test_case, pki, master, service):
        sentinel = cls(pki, master, service)
        test_case.addCleanup(sentinel.cleanup)
        sentinel.start()
        return sentinel

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=self.pki.ca,
                           ssl_certfile=self.pki.path("client.pem"),
                           ssl_keyfile=self.pki.path("client.key"), ssl_password=KEY_PASSWORD,
                           socket_timeout=1, socket_connect_timeout=1)

    def start(self, timeout=10.0):
        self.process = subprocess.Popen(
            ["redis-server", self.config, "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as client:
                    if client.sentinel_get_master_addr_by_name(self.service):
                        return self
            except (redis.RedisError, OSError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.cleanup()
                raise RuntimeError(f"TLS sentinel on port {self.port} did not start")
            time.sleep(0.05)

    def cleanup(self):
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)
