"""Kept database connections (webchat/db_threads.py) on a real replica and real PostgreSQL.

Each replica's Direct Line and stream threads keep their connections between requests. When
PostgreSQL drops them (a restart, a failover, an administrator's pg_terminate_backend), a
replica that sat idle for a moment checks its connections before it uses them again, so no
request fails; under traffic a dead connection fails the call that finds it and is closed
after it, so the next call on that thread connects again.
"""

import asyncio
import json
import time
from unittest import SkipTest

import psycopg
import websockets
from django.test import SimpleTestCase

from notifier.compat import asgiref as asgiref_internals
from notifier.compat import django as django_internals
from tests.support.fast_paths import fast_path
from tests.support.replicas import (
    POSTGRES_ADMIN_URL,
    postgres_unavailable,
    redis_unavailable,
    start_cluster,
)
from webchat.db_threads import HEALTH_CHECK_AFTER

API = "/v3/directline"
TIMEOUT = 15


@fast_path(asgiref_internals, django_internals)
class KeptConnectionsTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = postgres_unavailable() or redis_unavailable()
        if reason:
            raise SkipTest(reason)
        cls.cluster = start_cluster(cls, replicas=1, database="postgres")
        cls.secret = cls.cluster.create_tenant()

    def terminate_backends(self) -> int:
        """Drop every connection of the replica to its database, as a restart would."""
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.cluster.postgres_name],
            ).fetchall()
        return len(rows)

    def post(self, conversation, text):
        return self.cluster.http(
            0, "POST", f"{API}/bot/conversations/{conversation}/activities",
            {"type": "message", "text": text}, secret=self.secret,
        )  # fmt: skip

    def test_requests_after_the_database_dropped_every_connection(self):
        status, body = self.cluster.http(0, "POST", f"{API}/conversations", {}, secret=self.secret)
        self.assertEqual(status, 201, body)
        conversation, token = body["conversationId"], body["token"]
        url = self.cluster.replicas[0].ws_url + f"{API}/conversations/{conversation}/stream"

        async def scenario():
            async with websockets.connect(f"{url}?watermark=&t={token}") as ws:
                self.assertEqual(self.post(conversation, "before")[0], 200)
                first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                self.assertEqual([a["text"] for a in first["activities"]], ["before"])

                self.assertGreater(self.terminate_backends(), 0)
                await asyncio.sleep(HEALTH_CHECK_AFTER + 0.5)  # a quiet moment

                # Every thread checks its connection first: no request fails.
                for i in range(3):
                    status, body = self.post(conversation, f"after {i}")
                    self.assertEqual(status, 200, body)
                status, body = self.cluster.http(
                    0, "GET", f"{API}/conversations/{conversation}/activities", token=token
                )
                self.assertEqual((status, body["watermark"]), (200, "4"), body)
                # The stream's own thread read the new activities on a fresh connection too.
                texts = []
                deadline = time.monotonic() + TIMEOUT
                while len(texts) < 3 and time.monotonic() < deadline:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    texts += [a["text"] for a in frame["activities"]]
                self.assertEqual(texts, ["after 0", "after 1", "after 2"])

        asyncio.run(scenario())
