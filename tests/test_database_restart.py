"""A database restart under traffic, against a real daphne replica and a PRIVATE PostgreSQL
(started here on a free port: the shared server is never restarted).

Reads survive it: a read whose kept connection was cut is tried once more on a fresh one,
waiting up to ``RECONNECT_WINDOW`` seconds for the database to take it
(``webchat.db_threads.read_retried``), so no GET answers 5xx (a Direct Line client stops
polling for good on one). Writes are not retried: a POST in flight may get 500 ServiceError
("retry later"), which directlinejs shows as a failed send the user can retry. A stream
socket keeps streaming across the restart.
"""

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from unittest import SkipTest

import websockets
from django.db import OperationalError, connection
from django.test import SimpleTestCase, TransactionTestCase

from tests.support import replicas
from tests.support.postgres_server import PostgresServer, postgres_binaries_missing
from webchat.db_threads import read_retried

logger = logging.getLogger(__name__)

API = "/v3/directline"
RESTARTS = 2
READERS = 4
TIMEOUT = 30


class DatabaseRestartTests(SimpleTestCase):
    def setUp(self):
        reason = replicas.redis_unavailable() or postgres_binaries_missing()
        if reason:
            raise SkipTest(reason)
        self.server = PostgresServer.start(self)
        # Cleanups run last-in first-out: the cluster (and its database) goes before the server.
        self.cluster = replicas.start_cluster(self, replicas=1, database="postgres",
                                              postgres_admin_url=self.server.url)
        self.secret = self.cluster.create_tenant()

    def call(self, method, path, body=None, **auth):
        return self.cluster.http(0, method, path, body, timeout=TIMEOUT, **auth)

    def start_conversation(self):
        status, body = self.call("POST", f"{API}/conversations", secret=self.secret)
        self.assertIn(status, (200, 201), body)
        return body

    def post(self, conversation, text):
        return self.call(
            "POST", f"{API}/conversations/{conversation['conversationId']}/activities",
            {"type": "message", "text": text, "from": {"id": "u1"}},
            token=conversation["token"],
        )  # fmt: skip

    async def test_gets_survive_restarts_and_the_stream_goes_on(self):
        conversation = self.start_conversation()
        cid = conversation["conversationId"]
        self.assertEqual(self.post(conversation, "before")[0], 200)
        ws = await websockets.connect(conversation["streamUrl"], open_timeout=TIMEOUT)
        received = []

        async def receive_until(watermark):
            while not received or int(received[-1]["watermark"]) < watermark:
                received.append(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))

        await receive_until(2)  # "before" and the echo bot's reply

        stop = threading.Event()
        gets, posts = Counter(), Counter()
        paths = [f"{API}/conversations/{cid}/activities", f"{API}/conversations/{cid}"]

        def read_forever(index):
            while not stop.is_set():
                status, body = self.call("GET", paths[index % 2], token=conversation["token"])
                gets[status] += 1
                if status >= 500:
                    logger.error("GET answered %d: %s", status, body)

        def post_forever():
            n = 0
            while not stop.is_set():
                n += 1
                posts[self.post(conversation, f"during {n}")[0]] += 1

        workers = [threading.Thread(target=read_forever, args=(i,)) for i in range(READERS)]
        workers += [threading.Thread(target=post_forever) for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            downtimes = []
            for _ in range(RESTARTS):
                await asyncio.sleep(1.0)
                started = time.monotonic()
                await asyncio.to_thread(self.server.restart)
                downtimes.append(time.monotonic() - started)
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            for worker in workers:
                await asyncio.to_thread(worker.join, TIMEOUT)

        logger.info("database restarted %d times (pg_ctl restart: %s s): GETs %s, POSTs %s",
                    RESTARTS, ", ".join(f"{d:.2f}" for d in downtimes), dict(gets),
                    dict(posts))
        self.assertEqual(set(gets), {200}, gets)
        self.assertGreater(gets[200], 20 * RESTARTS)
        self.assertLessEqual(set(posts), {200, 500}, posts)

        # The stream read across the restarts: everything stored reaches it, once, in order.
        status, body = self.call("GET", f"{API}/conversations/{cid}/activities",
                                 token=conversation["token"])
        self.assertEqual(status, 200, body)
        await receive_until(int(body["watermark"]))
        streamed = [a["id"] for frame in received for a in frame["activities"]]
        self.assertEqual(streamed, [a["id"] for a in body["activities"]])
        await ws.close()


class ReadRetryTests(TransactionTestCase):
    """What ``read_retried`` does not retry (the restart itself is the test above)."""

    def test_an_error_that_leaves_the_connection_usable_is_raised_after_one_try(self):
        calls = []

        def locked():
            calls.append(1)
            connection.ensure_connection()
            raise OperationalError("database is locked")

        with self.assertRaisesMessage(OperationalError, "database is locked"):
            read_retried(locked)
        self.assertEqual(len(calls), 1)

    def test_other_errors_are_raised_after_one_try(self):
        calls = []

        def broken():
            calls.append(1)
            raise ValueError("not a database error")

        with self.assertRaises(ValueError):
            read_retried(broken)
        self.assertEqual(len(calls), 1)
