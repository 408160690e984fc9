"""Redis for tests: the shared server on 127.0.0.1:6379, or a private ``redis-server``.

Shared server (most tests): never FLUSH it, use a fresh channel or key prefix per test::

    from tests.support.redis_server import SHARED_URL, requires_shared_redis, unique_channel

    @requires_shared_redis
    class MyTests(SimpleTestCase):
        def test_x(self):
            channel = unique_channel()

Private server (tests that stop, restart or kill Redis)::

    server = RedisServer.start_for(self)   # free port, stopped by pid in cleanup
    server.url                              # redis://127.0.0.1:<port>/0
    server.stop(); server.start()           # restart on the same port
    server.kill(); server.start()           # SIGKILL, then restart empty
    server.client().execute_command("CLIENT", "KILL", "TYPE", "pubsub")

``closed_port_url()`` gives a URL where nothing listens (for strict-startup failures).
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

import redis

SHARED_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port_url(password=None):
    """A Redis URL on 127.0.0.1 whose port refuses connections."""
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{free_port()}/0"


def unique_channel(prefix="test"):
    """A pub/sub channel name no other test (or engineer) uses."""
    return f"{prefix}:{uuid.uuid4()}"


def redis_answers(url, timeout=1.0):
    """Whether ``url`` answers PING within ``timeout`` seconds."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def requires_shared_redis(test_item):
    """Skip a test (class) when the shared Redis does not answer."""
    return unittest.skipUnless(redis_answers(SHARED_URL), f"no Redis at {SHARED_URL}")(test_item)


def requires_redis_server(test_item):
    """Skip a test (class) when there is no ``redis-server`` binary to start."""
    return unittest.skipUnless(shutil.which("redis-server"), "redis-server is not installed")(
        test_item
    )


class RedisServer:
    """One private ``redis-server`` on 127.0.0.1, no persistence, controlled by its pid."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.process = None
        self._dir = tempfile.mkdtemp(prefix="test-redis-")

    @classmethod
    def start_for(cls, test_case):
        """Start a server and register its stop (and directory removal) as a test cleanup."""
        server = cls()
        test_case.addCleanup(server.cleanup)
        server.start()
        return server

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def extra_args(self):
        """More ``redis-server`` arguments (subclasses: replicas, passwords, cluster mode)."""
        return []

    def answers(self):
        """Whether the server answers PING (subclasses: with their credentials)."""
        try:
            with self.client(socket_timeout=0.2, socket_connect_timeout=0.2) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def start(self, timeout=10.0):
        """Start on :attr:`port` (the same one after a stop) and wait until it answers."""
        if self.process is not None:
            raise RuntimeError(f"redis-server already running as pid {self.pid}")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self._dir, "--loglevel", "warning",
             *self.extra_args()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer")
            time.sleep(0.02)
        return self

    def stop(self, timeout=10.0):
        """Stop the server by its pid (SIGTERM, then SIGKILL) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self, timeout=10.0):
        """SIGKILL the server by its pid (a crash: nothing saved, clients cut) and wait."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(timeout)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def client(self, **kwargs):
        """A synchronous client on this server (close it when done)."""
        return redis.Redis.from_url(self.url, **kwargs)
