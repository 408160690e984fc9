"""Two real daphne replicas on the Redis backplane, one shared database, real WebSocket clients.

Everything goes through the public surface only: the Direct Line REST API (directline.md)
and the streamUrl it hands out. Runs on SQLite and on PostgreSQL.
"""

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from unittest import SkipTest
from urllib.parse import urlsplit

import websockets
from django.test import SimpleTestCase

from tests.support.replicas import postgres_unavailable, redis_unavailable, start_cluster

logger = logging.getLogger(__name__)

#: The issue's bound for cross-replica delivery (measured: a few ms; see the report).
DELIVERY = 1.0
#: Waiting for everything else (setup, catching up): generous, the machine is shared.
TIMEOUT = 15
API = "/v3/directline"


class StreamClient:
    """A real WebSocket client on a streamUrl that checks every frame it receives."""

    def __init__(self, testcase, ws):
        self.testcase = testcase
        self.ws = ws
        self.activities = []
        self.arrived = {}  # activity id -> monotonic arrival time
        self.watermark = None

    @classmethod
    async def open(cls, testcase, url):
        return cls(testcase, await websockets.connect(url, open_timeout=TIMEOUT))

    async def receive(self, timeout):
        """Receive one frame: a valid ActivitySet, watermarks only going up, in order."""
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.testcase.assertEqual(set(frame), {"activities", "watermark"}, frame)
        watermark = int(frame["watermark"])
        if self.watermark is not None:
            self.testcase.assertGreater(watermark, self.watermark)
        now = time.monotonic()
        for activity in frame["activities"]:
            self.arrived[activity["id"]] = now
        self.activities.extend(frame["activities"])
        self.watermark = watermark
        return frame["activities"]

    async def until(self, predicate, timeout=TIMEOUT):
        """Receive until ``predicate(self)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.testcase.fail(f"not received within {timeout} s; got {self.ids()}")
            try:
                await self.receive(remaining)
            except TimeoutError:
                continue

    async def until_watermark(self, watermark, timeout=TIMEOUT):
        await self.until(lambda c: (c.watermark or 0) >= watermark, timeout)

    async def until_id(self, activity_id, timeout=TIMEOUT):
        await self.until(lambda c: activity_id in c.arrived, timeout)
        return self.arrived[activity_id]

    async def assert_nothing_more(self, wait=0.3):
        with self.testcase.assertRaises(TimeoutError):
            await self.receive(wait)

    def ids(self):
        return [a["id"] for a in self.activities]

    def assert_exactly(self, conversation_id, first, last):
        """Received each of activities ``first..last`` once, in order, and nothing else."""
        expected = [f"{conversation_id}|{n:07d}" for n in range(first, last + 1)]
        self.testcase.assertEqual(self.ids(), expected)

    async def close(self):
        await self.ws.close()


class TwoReplicaMixin:
    database = "sqlite"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = redis_unavailable()
        if reason is None and cls.database == "postgres":
            reason = postgres_unavailable()
        if reason:
            raise SkipTest(reason)
        cls.cluster = start_cluster(cls, replicas=2, database=cls.database)
        cls.secret = cls.cluster.create_tenant()

    # REST, in a thread: urllib is blocking and the clients' loop must keep reading.

    async def call(self, replica, method, path, body=None, **auth):
        return await asyncio.to_thread(self.cluster.http, replica, method, path, body, **auth)

    async def start_conversation(self, replica):
        """tokens/generate (secret) then POST /conversations (token), both on ``replica``."""
        status, generated = await self.call(
            replica, "POST", f"{API}/tokens/generate", {"user": {"id": "u1"}}, secret=self.secret
        )
        self.assertEqual(status, 200, generated)
        status, started = await self.call(
            replica, "POST", f"{API}/conversations", token=generated["token"]
        )
        self.assertIn(status, (200, 201), started)
        self.assert_stream_url_on(started["streamUrl"], replica)
        return started

    async def resume(self, replica, conversation, watermark=None):
        """GET /conversations/{id}?watermark= on ``replica``: the client's reconnect call."""
        query = "" if watermark is None else f"?watermark={watermark}"
        status, body = await self.call(
            replica, "GET", f"{API}/conversations/{conversation['conversationId']}{query}",
            token=conversation["token"],
        )  # fmt: skip
        self.assertEqual(status, 200, body)
        self.assert_stream_url_on(body["streamUrl"], replica)
        return body

    def assert_stream_url_on(self, url, replica):
        self.assertEqual(urlsplit(url).port, self.cluster.replicas[replica].port, url)

    async def stream(self, replica, conversation, watermark=None):
        resumed = await self.resume(replica, conversation, watermark)
        return await StreamClient.open(self, resumed["streamUrl"])

    async def post_user(self, replica, conversation, text):
        status, body = await self.call(
            replica, "POST", f"{API}/conversations/{conversation['conversationId']}/activities",
            {"type": "message", "text": text, "from": {"id": "u1"},
             "channelData": {"clientActivityID": text}},
            token=conversation["token"],
        )  # fmt: skip
        self.assertEqual(status, 200, body)
        return body["id"]

    async def post_bot(self, replica, conversation, text):
        status, body = await self.call(
            replica, "POST", f"{API}/bot/conversations/{conversation['conversationId']}/activities",
            {"type": "message", "text": text}, secret=self.secret,
        )  # fmt: skip
        self.assertEqual(status, 200, body)
        return body["id"]

    async def transcript(self, replica, conversation):
        status, body = await self.call(
            replica, "GET", f"{API}/conversations/{conversation['conversationId']}/activities",
            token=conversation["token"],
        )  # fmt: skip
        self.assertEqual(status, 200, body)
        return body

    async def settled(self, conversation, watermark):
        """Wait until the transcript holds ``watermark`` activities (bot replies are async)."""
        deadline = time.monotonic() + TIMEOUT
        while int((await self.transcript(0, conversation))["watermark"] or 0) < watermark:
            self.assertLess(time.monotonic(), deadline, "the transcript did not settle")
            await asyncio.sleep(0.05)

    # The tests

    async def test_socket_on_b_receives_what_is_posted_through_a(self):
        conversation = await self.start_conversation(0)
        cid = conversation["conversationId"]
        on_b = await self.stream(1, conversation)
        latencies = {}  # from sending the POST to the frame's arrival on B

        sent = time.monotonic()
        user_id = await self.post_user(0, conversation, "hello from A")
        post_ms = (time.monotonic() - sent) * 1000
        latencies["user message"] = await on_b.until_id(user_id, DELIVERY) - sent
        reply = f"{cid}|0000002"
        latencies["bot reply"] = await on_b.until_id(reply, DELIVERY) - sent
        echo, answer = on_b.activities[:2]
        self.assertEqual((echo["text"], echo["from"]["role"]), ("hello from A", "user"))
        self.assertEqual(echo["channelData"], {"clientActivityID": "hello from A"})
        self.assertEqual(
            (answer["text"], answer["from"]["role"]), ("You said: hello from A", "bot")
        )
        self.assertEqual(answer["replyToId"], user_id)

        sent = time.monotonic()
        bot_id = await self.post_bot(0, conversation, "from a bot elsewhere")
        latencies["bot API post"] = await on_b.until_id(bot_id, DELIVERY) - sent
        self.assertEqual(on_b.activities[-1]["from"]["role"], "bot")
        await on_b.assert_nothing_more()
        on_b.assert_exactly(cid, 1, 3)
        await on_b.close()
        logger.info(
            "cross-replica delivery on %s, POST sent to A -> frame on B: %s (the user POST took "
            "%.1f ms)", self.database,
            ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in latencies.items()), post_ms,
        )  # fmt: skip

    async def test_socket_on_a_receives_its_own_replicas_posts_exactly_once(self):
        conversation = await self.start_conversation(0)
        cid = conversation["conversationId"]
        on_a = await self.stream(0, conversation)
        on_b = await self.stream(1, conversation)
        for n in range(3):
            await self.post_user(0, conversation, f"own {n}")
        await self.post_bot(0, conversation, "own bot")
        await self.settled(conversation, 7)
        for client in (on_a, on_b):
            await client.until_watermark(7)
            await client.assert_nothing_more()
            client.assert_exactly(cid, 1, 7)
            await client.close()

    async def test_reconnect_with_last_watermark_on_either_replica(self):
        conversation = await self.start_conversation(0)
        cid = conversation["conversationId"]
        first = await self.stream(0, conversation)
        await self.post_user(0, conversation, "before")
        await first.until_watermark(2)
        await first.close()

        # Away: posts through both replicas, by the user and by a bot.
        await self.post_user(1, conversation, "while away (B)")
        await self.post_bot(0, conversation, "while away (bot via A)")
        await self.settled(conversation, 5)

        on_b = await self.stream(1, conversation, watermark=first.watermark)
        await on_b.until_watermark(5)
        await on_b.assert_nothing_more()
        on_b.assert_exactly(cid, 3, 5)
        await on_b.close()

        await self.post_user(0, conversation, "away again (A)")
        await self.settled(conversation, 7)
        on_a = await self.stream(0, conversation, watermark=on_b.watermark)
        await on_a.until_watermark(7)
        # And live again after the replay, from the other replica.
        bot_id = await self.post_bot(1, conversation, "live again")
        await on_a.until_id(bot_id)
        await on_a.assert_nothing_more()
        on_a.assert_exactly(cid, 6, 8)
        await on_a.close()

    async def test_concurrent_posts_through_both_replicas_are_gap_free(self):
        conversation = await self.start_conversation(0)
        cid = conversation["conversationId"]
        clients = [await self.stream(0, conversation), await self.stream(1, conversation)]
        per_replica, workers = 12, 3
        texts = [(replica, f"r{replica}-{n}") for replica in (0, 1) for n in range(per_replica)]

        def post(item):
            replica, text = item
            status, body = self.cluster.http(
                replica, "POST", f"{API}/conversations/{cid}/activities",
                {"type": "message", "text": text, "from": {"id": "u1"}},
                token=conversation["token"],
            )  # fmt: skip
            return status, body

        def post_all():
            with ThreadPoolExecutor(2 * workers) as pool:
                return list(pool.map(post, texts))

        results = await asyncio.to_thread(post_all)
        self.assertEqual([status for status, _ in results], [200] * len(texts), results)
        total = 2 * len(texts)  # each message and its bot reply
        await self.settled(conversation, total)

        transcript = await self.transcript(1, conversation)
        ids = [activity["id"] for activity in transcript["activities"]]
        self.assertEqual(ids, [f"{cid}|{n:07d}" for n in range(1, total + 1)])
        self.assertEqual(transcript["watermark"], str(total))
        user_texts = [a["text"] for a in transcript["activities"] if a["from"]["role"] == "user"]
        self.assertCountEqual(user_texts, [text for _, text in texts])
        for client in clients:
            await client.until_watermark(total)
            await client.assert_nothing_more()
            client.assert_exactly(cid, 1, total)
            await client.close()


class TwoReplicasOnSQLiteTests(TwoReplicaMixin, SimpleTestCase):
    database = "sqlite"

    async def test_real_client_close_codes_and_limits(self):
        conversation = await self.start_conversation(0)
        url = (await self.resume(1, conversation))["streamUrl"]

        # A refusal's close code reaches a real client through daphne.
        bad = url.replace(f"t={conversation['token']}", "t=not-a-token")
        async with websockets.connect(bad, open_timeout=TIMEOUT) as ws:
            with self.assertRaises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        self.assertEqual(closed.exception.rcvd.code, 4401)

        # Five sockets per conversation on one replica; the sixth is refused with 4429.
        clients = [await StreamClient.open(self, url) for _ in range(5)]
        async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
            with self.assertRaises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        self.assertEqual(closed.exception.rcvd.code, 4429)

        # The client's "" pings are ignored; a frame over 1 MiB ends that socket only.
        # daphne cuts it before the application sees it (--websocket-max-message-size, 1 MiB):
        # autobahn fails the connection by dropping TCP, so this client sees 1006, not 1009
        # (the consumer's own 1009 is tested with a communicator in test_consumer_limits).
        await clients[0].ws.send("")
        await clients[1].ws.send("x" * (1024 * 1024 + 1))
        with self.assertRaises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(clients[1].ws.recv(), TIMEOUT)
        self.assertIn(closed.exception.rcvd.code if closed.exception.rcvd else 1006, {1006, 1009})
        user_id = await self.post_user(0, conversation, "still streaming")
        for client in clients[:1] + clients[2:]:
            await client.until_id(user_id)
            await client.close()
        await clients[1].close()


class TwoReplicasOnPostgreSQLTests(TwoReplicaMixin, SimpleTestCase):
    database = "postgres"
