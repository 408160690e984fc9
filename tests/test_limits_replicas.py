"""Rate limits shared by two real daphne replicas through Redis: pushed past across both."""

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from unittest import SkipTest

import redis
import websockets
from django.test import SimpleTestCase

from tests.support.redis_server import SHARED_URL
from tests.support.replicas import redis_unavailable, start_cluster

API = "/v3/directline"
TIMEOUT = 20  # generous: the machine is shared


class SharedLimitTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = redis_unavailable()
        if reason:
            raise SkipTest(reason)
        cls.prefix = f"test:rate:{uuid.uuid4()}"
        rates = {
            "KEY_PREFIX": cls.prefix,
            "POSTS_PER_TOKEN": None, "POSTS_PER_IP": None, "POSTS_PER_TENANT": None,
            "CONVERSATIONS_PER_IP": None, "CONVERSATIONS_PER_TENANT": [5, 60],
            "SOCKETS_PER_TOKEN": [3, 60], "SOCKETS_PER_IP": None, "SOCKETS_PER_TENANT": None,
        }  # fmt: skip
        cls.cluster = start_cluster(
            cls,
            replicas=2,
            extra_env={"WEBCHAT_LIMITS_ENABLED": "1", "WEBCHAT_LIMITS_JSON": json.dumps(rates)},
        )
        cls.addClassCleanup(cls._delete_keys)
        cls.secret = cls.cluster.create_tenant()

    @classmethod
    def _delete_keys(cls):
        client = redis.Redis.from_url(SHARED_URL)
        try:
            keys = list(client.scan_iter(f"{cls.prefix}:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def generate(self, replica):
        """tokens/generate on ``replica``: ``(status, Retry-After, body)``."""
        request = urllib.request.Request(
            self.cluster.replicas[replica].http_url + f"{API}/tokens/generate",
            data=b"{}",
            method="POST",
            headers={"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.status, None, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Retry-After"), json.loads(exc.read())

    def test_conversations_per_tenant_across_replicas(self):
        statuses = [self.generate(replica)[0] for replica in (0, 1, 0, 1, 1)]
        self.assertEqual(statuses, [200] * 5)
        for replica in (0, 1):
            status, retry_after, body = self.generate(replica)
            self.assertEqual(status, 429, body)
            self.assertEqual(body["error"]["code"], "TooManyRequests")
            self.assertTrue(1 <= int(retry_after) <= 12, retry_after)

    def test_socket_opens_per_token_across_replicas(self):
        # A tenant of its own: the conversation limit above is not this test's.
        secret = self.cluster.create_tenant()
        status, body = self.cluster.http(0, "POST", f"{API}/tokens/generate", {}, secret=secret)
        self.assertEqual(status, 200, body)
        path = f"{API}/conversations/{body['conversationId']}/stream?watermark=&t={body['token']}"
        codes = asyncio.run(self.open_sockets(path, (0, 1, 0, 1)))
        self.assertEqual(codes, [None, None, None, 4429])

    async def open_sockets(self, path, replicas):
        """Open a socket on each replica in turn (keeping them open); return the close code of
        each (None: still open after a moment)."""
        opened, codes = [], []
        try:
            for replica in replicas:
                url = self.cluster.replicas[replica].ws_url + path
                ws = await websockets.connect(url, open_timeout=TIMEOUT)
                opened.append(ws)
                try:
                    await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    codes.append(None)
                except websockets.ConnectionClosed as closed:
                    codes.append(closed.rcvd.code if closed.rcvd else None)
                else:
                    codes.append(None)  # a frame (the replay): open
        finally:
            for ws in opened:
                await ws.close()
        return codes


class DefaultLimitsFindingTests(SimpleTestCase):
    """Issue 13's finding, replayed against a replica with the default limits:
    ``tokens/generate`` made 500 conversations in 1.3 s."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = redis_unavailable()
        if reason:
            raise SkipTest(reason)
        cls.prefix = f"test:rate:{uuid.uuid4()}"
        cls.cluster = start_cluster(cls, replicas=1, extra_env={
            "WEBCHAT_LIMITS_ENABLED": "1",
            "WEBCHAT_LIMITS_JSON": json.dumps({"KEY_PREFIX": cls.prefix}),
        })  # fmt: skip
        cls.addClassCleanup(SharedLimitTests._delete_keys.__func__, cls)

    def test_500_generates_make_at_most_the_burst(self):
        from concurrent.futures import ThreadPoolExecutor

        secret = self.cluster.create_tenant()
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(
                lambda _: self.cluster.http(0, "POST", f"{API}/tokens/generate", {},
                                            secret=secret)[0],
                range(500),
            ))  # fmt: skip
        elapsed = time.monotonic() - started
        created = statuses.count(200)
        self.assertEqual(created + statuses.count(429), 500)
        # CONVERSATIONS_PER_TENANT (100, 10): the burst, plus one per 0.1 s of the run.
        self.assertGreaterEqual(created, 100)
        self.assertLessEqual(created, 100 + int(elapsed * 10) + 1)
        count = self.cluster.manage("shell", "-c", "from webchat.models import Conversation; "
                                    "print(Conversation.objects.count())")  # fmt: skip
        self.assertEqual(int(count.strip().splitlines()[-1]), created)
