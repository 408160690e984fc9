"""notifier.pipeline: PUBLISHes written in RESP directly, one round trip, real Redis."""

import asyncio
import time

import redis.asyncio as aioredis
from django.test import SimpleTestCase
from redis.exceptions import ResponseError

from notifier import pipeline
from tests.support.redis_server import (
    SHARED_URL,
    RedisServer,
    requires_redis_server,
    requires_shared_redis,
    unique_channel,
)
from tests.test_notifier_redis import raw_subscriber

TIMEOUT = 5  # generous: the machine is shared


async def received(pubsub, count):
    payloads = []
    deadline = time.monotonic() + TIMEOUT
    while len(payloads) < count and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message:
            payloads.append((message["channel"], message["data"]))
    return payloads


@requires_shared_redis
class PublishTests(SimpleTestCase):
    async def test_payloads_arrive_byte_for_byte_in_order(self):
        # A channel name beyond ASCII, and payloads RESP must length-prefix, not delimit.
        channel = unique_channel("test:é✓")
        payloads = [b"plain", b"", b"with\r\nCRLF\r\n", bytes(range(256)), b"x" * 100_000,
                    '{"tenant_id":"会话"}'.encode()]
        client, pubsub = await raw_subscriber(SHARED_URL, channel)
        publisher = aioredis.Redis.from_url(SHARED_URL)
        try:
            head = pipeline.command_head(channel)
            counts = await pipeline.publish(publisher, [(head, p) for p in payloads])
            self.assertEqual(counts, [1] * len(payloads))
            self.assertEqual(await received(pubsub, len(payloads)),
                             [(channel.encode(), p) for p in payloads])
        finally:
            await publisher.aclose()
            await pubsub.aclose()
            await client.aclose()

    async def test_a_large_batch_is_one_round_trip_of_many_replies(self):
        channel = unique_channel()
        publisher = aioredis.Redis.from_url(SHARED_URL)
        try:
            head = pipeline.command_head(channel)
            commands = [(head, b"%d" % n) for n in range(2000)]
            self.assertEqual(await pipeline.publish(publisher, commands), [0] * 2000)
            # The connection went back to the pool with nothing left unread.
            self.assertEqual(await publisher.ping(), True)
        finally:
            await publisher.aclose()


@requires_redis_server
class ErrorTests(SimpleTestCase):
    async def test_an_error_reply_raises_and_the_connection_is_not_reused(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        admin = aioredis.Redis.from_url(server.url)
        await admin.execute_command("ACL", "SETUSER", "limited", "on", ">secret", "~*",
                                    "&allowed:*", "+@all")
        limited = aioredis.Redis.from_url(f"redis://limited:secret@127.0.0.1:{server.port}/0")
        try:
            allowed = pipeline.command_head("allowed:x")
            forbidden = pipeline.command_head("forbidden:x")
            with self.assertRaisesMessage(ResponseError, "no permissions"):
                await pipeline.publish(limited, [(allowed, b"1"), (forbidden, b"2"),
                                                 (allowed, b"3")])
            # The next round trip reads its own replies, not the ones left behind.
            self.assertEqual(await pipeline.publish(limited, [(allowed, b"4")] * 3), [0] * 3)
        finally:
            await limited.aclose()
            await admin.aclose()

    async def test_a_pooled_connection_redis_closed_costs_no_batch(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        channel = unique_channel()
        client, pubsub = await raw_subscriber(server.url, channel)
        publisher = aioredis.Redis.from_url(server.url, client_name="publisher")
        admin = aioredis.Redis.from_url(server.url)
        try:
            head = pipeline.command_head(channel)
            self.assertEqual(await pipeline.publish(publisher, [(head, b"1")]), [1])
            # The publisher's pooled connection (the subscriber's is of type pubsub).
            killed = await admin.client_kill_filter(_type="normal", skipme=True)
            self.assertGreaterEqual(killed, 1)
            self.assertEqual(await pipeline.publish(publisher, [(head, b"2")]), [1])
            self.assertEqual([p for _, p in await received(pubsub, 2)], [b"1", b"2"])
        finally:
            await admin.aclose()
            await publisher.aclose()
            await pubsub.aclose()
            await client.aclose()
