"""A production-configured daphne replica for the attack suites, and a raw WebSocket client.

``ReplicaAttackMixin`` (for a ``SimpleTestCase``) starts one replica (``DEBUG=0`` with real
production settings, the Redis backplane, SQLite or PostgreSQL) with a tenant and a
conversation, and checks after every test that the replica still serves, that nothing was
written to its database and that its log holds no 5xx and no "Internal Server Error".

``RawWebSocket`` speaks the protocol byte by byte, so tests can break it on purpose
(unmasked frames, invalid UTF-8 in text frames, oversized control frames...).
"""

import base64
import contextlib
import os
import re
import socket
import struct
import uuid
from unittest import SkipTest

import psycopg

from .attack import raw_exchange, sqlite_counts
from .replicas import postgres_unavailable, redis_unavailable, start_cluster

API = "/v3/directline"
_ACCESS_STATUS = re.compile(rb'" (\d{3}) \d+\s*$', re.MULTILINE)


#: Attacks meet the production configuration (DEBUG=0: no debug pages).
SIGNING_KEY = f"attack-suite-signing-key-{uuid.uuid4().hex}"
PRODUCTION_ENV = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": f"attack-suite-secret-key-{uuid.uuid4().hex}{uuid.uuid4().hex}",
    "WEBCHAT_TOKEN_SIGNING_KEY": SIGNING_KEY,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CORS_ALLOWED_ORIGINS": "https://www.example.com",
}


class ReplicaAttackMixin:
    database = "sqlite"
    extra_env = PRODUCTION_ENV

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = redis_unavailable()
        if reason is None and cls.database == "postgres":
            reason = postgres_unavailable()
        if reason:
            raise SkipTest(reason)
        cls.cluster = start_cluster(cls, replicas=1, database=cls.database, extra_env=cls.extra_env)
        cls.replica = cls.cluster.replicas[0]
        cls.secret = cls.cluster.create_tenant()
        cls.conversation_id, cls.token = cls.start_conversation()

    @classmethod
    def start_conversation(cls):
        """A new conversation on the replica (with the tenant secret): ``(id, token)``."""
        status, body = cls.cluster.http(0, "POST", f"{API}/conversations", {}, secret=cls.secret)
        if status != 201:
            raise RuntimeError(f"POST /conversations answered {status}: {body}")
        return body["conversationId"], body["token"]

    def setUp(self):
        self.before = self.counts()

    def tearDown(self):
        self.assertServing()
        self.assertEqual(self.counts(), self.before, "something was written")
        self.assertNoServerErrors()

    def counts(self):
        if self.database == "sqlite":
            return sqlite_counts(self.cluster.database_url)
        with psycopg.connect(self.cluster.database_url) as connection:
            return {
                table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("webchat_activity", "webchat_conversation", "webchat_tenant")
            }

    def send(self, data, timeout=10.0):
        return raw_exchange(self.replica.port, data, timeout=timeout)

    def assertServing(self):
        self.assertIsNone(self.replica.process.poll(), self.replica.log_tail())
        status, body = self.cluster.http(
            0, "GET", f"{API}/conversations/{self.conversation_id}", secret=self.secret
        )
        self.assertEqual(status, 200, body)

    def assertNoServerErrors(self):
        log = self.replica.log_path.read_bytes()
        statuses = [int(status) for status in _ACCESS_STATUS.findall(log)]
        self.assertTrue(statuses, "no access log lines")
        self.assertFalse([s for s in statuses if s >= 500], self.replica.log_tail())
        self.assertNotIn(b"Internal Server Error", log)

    def assertAnswer(self, response, allowed, case="", directline=True):
        """The status is one of ``allowed`` (None: closed without an answer); Django's
        refusals under /v3/directline carry the Direct Line error body."""
        self.assertIn(response.status, allowed, f"{case}: {response.head[:200]!r}")
        refused = response.status is not None and response.status >= 400
        # daphne's own refusals (its HTTP parser's) carry no Content-Type; Django's must be
        # the Direct Line error body.
        if directline and refused and b"\r\ncontent-type:" in response.head.lower():
            self.assertIn(b"content-type: application/json", response.head.lower(), case)
            error = response.json.get("error")
            self.assertEqual(set(error), {"code", "message"}, case)
            self.assertLessEqual(len(error["message"]), 400, case)


class RawWebSocket:
    """A WebSocket client made of bytes (RFC 6455), for protocol violations."""

    def __init__(self, sock, head):
        self.sock = sock
        self.head = head  # the server's handshake answer
        self.buffer = b""

    @classmethod
    def connect(cls, port, target, extra_headers=b"", timeout=10.0):
        """Handshake on ``target`` (bytes allowed); returns the client, whatever the answer."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET " + (target if isinstance(target, bytes) else target.encode()) + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: "
            + key
            + b"\r\nSec-WebSocket-Version: 13\r\n"
            + extra_headers
            + b"\r\n"
        )
        client = cls(sock, b"")
        client.head = client._read_until(b"\r\n\r\n")
        return client

    @property
    def status(self):
        return int(self.head.split(b" ", 2)[1]) if self.head.startswith(b"HTTP/1.1 ") else None

    def _read_until(self, marker):
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exact(self, size):
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", first, (0x80 if mask else 0) | size)
        elif size < 2**16:
            header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, size)
        else:
            header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, size)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            header += key
        # The server may have given up on us already: what it said is read next.
        with contextlib.suppress(OSError):
            self.sock.sendall(header + payload)

    def close_code(self, timeout=10.0):
        """Read frames until the server closes: its close code, or None if it just dropped
        the connection (RFC 6455's 1006)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                first, second = self._read_exact(2)
                size = second & 0x7F
                if size == 126:
                    size = struct.unpack("!H", self._read_exact(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", self._read_exact(8))[0]
                payload = self._read_exact(size)
                if first & 0x0F == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        except (ConnectionError, OSError):
            return None

    def close(self):
        self.sock.close()
