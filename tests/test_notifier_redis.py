"""The Redis notifier against real Redis: two replicas on one server, wire bytes on the
channel, fire-and-forget while Redis is down, sync publishers without an event loop."""

import asyncio
import threading
import time
import uuid

import redis
import redis.asyncio as aioredis
from django.test import SimpleTestCase

from notifier import lag, wire
from notifier.backends.redis import RedisNotifier
from notifier.events import NotifyEvent, group_name, watermark_message
from notifier.exceptions import BackplaneUnavailable
from notifier.layers import LocalChannelLayer
from notifier.sendqueue import BATCH_SIZE, SendQueue
from tests.support.processes import child_env, run_manage
from tests.support.redis_server import (
    SHARED_URL,
    RedisServer,
    closed_port_url,
    requires_redis_server,
    requires_shared_redis,
    unique_channel,
)
from tests.support.tcp_proxy import TcpProxy

TIMEOUT = 5  # generous: the machine is shared; nothing here measures speed


class Replica:
    """One replica in a test: its own local layer, a Redis notifier and its listener."""

    def __init__(self, url, channel, **kwargs):
        self.layer = LocalChannelLayer()
        self.notifier = RedisNotifier(url, channel=channel, channel_layer=self.layer, **kwargs)
        self.listener = None

    async def start(self, connected=True):
        await self.notifier.astart()
        self.listener = self.notifier.listener()
        self.listener.start()
        if connected:
            await self.listener.wait_connected(TIMEOUT)
        return self

    async def aclose(self):
        if self.listener is not None:
            await self.listener.aclose()
        await self.notifier.aclose()

    async def subscribe(self, tenant_id, conversation_id):
        channel = await self.layer.new_channel()
        await self.layer.group_add(group_name(tenant_id, conversation_id), channel)
        return channel

    async def receive(self, channel, timeout=TIMEOUT):
        return await asyncio.wait_for(self.layer.receive(channel), timeout)


async def raw_subscriber(url, channel):
    """A plain redis-py subscriber, confirmed subscribed; the caller closes it."""
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    message = await pubsub.get_message(timeout=TIMEOUT)
    assert message and message["type"] == "subscribe", message
    return client, pubsub


async def raw_messages(pubsub, count):
    payloads = []
    deadline = time.monotonic() + TIMEOUT
    while len(payloads) < count and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message:
            payloads.append(message["data"])
    return payloads


async def eventually(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@requires_shared_redis
class TwoReplicaTests(SimpleTestCase):
    async def test_cross_replica_delivery_and_one_local_delivery_of_own_publish(self):
        channel = unique_channel()
        a = await Replica(SHARED_URL, channel).start()
        b = await Replica(SHARED_URL, channel).start()
        try:
            on_a = await a.subscribe("tenant-a", "conv-1")
            on_b = await b.subscribe("tenant-a", "conv-1")
            event = NotifyEvent("tenant-a", "conv-1", 42)
            await a.notifier.apublish(event)
            self.assertEqual(await a.receive(on_a), watermark_message(event))
            self.assertEqual(await b.receive(on_b), watermark_message(event))
            # A's listener hears its own PUBLISH and drops it: still exactly one on A.
            await eventually(lambda: a.listener.counters["self_echo"] == 1)
            with self.assertRaises(TimeoutError):
                await a.receive(on_a, timeout=0.2)
            self.assertEqual(b.listener.counters["delivered"], 1)
            self.assertEqual(a.listener.counters["delivered"], 0)

            await b.notifier.apublish(NotifyEvent("tenant-a", "conv-1", 43))
            self.assertEqual((await a.receive(on_a))["watermark"], 43)
            self.assertEqual((await b.receive(on_b))["watermark"], 43)
            await eventually(lambda: b.listener.counters["self_echo"] == 1)
            with self.assertRaises(TimeoutError):
                await b.receive(on_b, timeout=0.2)
        finally:
            await a.aclose()
            await b.aclose()

    async def test_raw_foreign_malformed_and_unknown_version_payloads(self):
        channel = unique_channel()
        replica = await Replica(SHARED_URL, channel).start()
        client = aioredis.Redis.from_url(SHARED_URL)
        try:
            local = await replica.subscribe("t", "c")
            foreign = uuid.uuid4()
            own_upper = str(replica.notifier.instance_id).upper()
            payloads = [
                b"not json",
                b'{"tenant_id":"t","conversation_id":"c","new_watermark":1,"version":2,'
                b'"instance_id":"%s"}' % str(foreign).encode(),
                b'{"tenant_id":"t","conversation_id":"c","new_watermark":2,"version":1,'
                b'"instance_id":"%s"}' % own_upper.encode(),
                wire.encode(NotifyEvent("t", "c", 3), foreign),
            ]
            for payload in payloads:
                await client.publish(channel, payload)
            self.assertEqual((await replica.receive(local))["watermark"], 3)
            counters = replica.listener.counters
            self.assertEqual(
                (counters["malformed"], counters["unknown_version"], counters["self_echo"],
                 counters["delivered"]),
                (1, 1, 1, 1),
            )
            with self.assertRaises(TimeoutError):
                await replica.receive(local, timeout=0.2)
        finally:
            await client.aclose()
            await replica.aclose()

    async def test_publish_puts_exact_wire_v1_bytes_on_the_channel_in_order(self):
        channel = unique_channel()
        client, pubsub = await raw_subscriber(SHARED_URL, channel)
        notifier = RedisNotifier(SHARED_URL, channel=channel, channel_layer=LocalChannelLayer(),
                                 publish_timestamps=False)
        await notifier.astart()
        try:
            events = [NotifyEvent("ténant", f"conv|{n}", n) for n in range(50)]
            for event in events:
                await notifier.apublish(event)
            # aclose() flushes what is still queued before it stops the sender.
            await notifier.aclose()
            payloads = await raw_messages(pubsub, len(events))
            self.assertEqual(payloads, [wire.encode(e, notifier.instance_id) for e in events])
            self.assertEqual(notifier.stats()["mirrored"], 50)
        finally:
            await notifier.aclose()
            await pubsub.aclose()
            await client.aclose()

    async def test_payloads_carry_a_publish_timestamp_after_the_exact_wire_v1_fields(self):
        channel = unique_channel()
        client, pubsub = await raw_subscriber(SHARED_URL, channel)
        notifier = RedisNotifier(SHARED_URL, channel=channel, channel_layer=LocalChannelLayer())
        await notifier.astart()
        try:
            before = time.time_ns() // 1_000_000
            events = [NotifyEvent("ténant", f"conv|{n}", n) for n in range(5)]
            for event in events:
                await notifier.apublish(event)
            await notifier.aclose()
            after = time.time_ns() // 1_000_000
            payloads = await raw_messages(pubsub, len(events))
            for event, payload in zip(events, payloads, strict=True):
                stamped = lag.read(payload)
                self.assertTrue(before <= stamped <= after, (before, stamped, after))
                # The reference ignores the extra field; everything else is byte-exact.
                self.assertEqual(payload, lag.stamp(wire.encode(event, notifier.instance_id),
                                                    stamped))
                self.assertEqual(wire.decode(payload).event, event)
        finally:
            await notifier.aclose()
            await pubsub.aclose()
            await client.aclose()

    async def test_a_tight_publish_loop_does_not_starve_the_sender(self):
        notifier = RedisNotifier(SHARED_URL, channel=unique_channel(), capacity=300,
                                 channel_layer=LocalChannelLayer())
        await notifier.astart()
        try:
            for watermark in range(3000):
                await notifier.apublish(NotifyEvent("t", "c", watermark))
        finally:
            await notifier.aclose()
        stats = notifier.stats()
        self.assertEqual((stats["mirrored"], stats["mirror_dropped"]), (3000, 0))

    async def test_an_unencodable_event_is_delivered_locally_and_counted(self):
        notifier = RedisNotifier(SHARED_URL, channel=unique_channel(),
                                 channel_layer=LocalChannelLayer())
        await notifier.astart()
        try:
            await notifier.apublish(NotifyEvent("\ud800", "c", 1))  # a lone surrogate
            self.assertEqual(notifier.stats()["mirror_failures"], 1)
        finally:
            await notifier.aclose()


@requires_redis_server
class RedisDownTests(SimpleTestCase):
    async def test_publish_while_redis_is_down_returns_promptly_and_delivers_locally(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        channel = unique_channel()
        replica = await Replica(server.url, channel).start()
        try:
            local = await replica.subscribe("t", "c")
            await replica.notifier.apublish(NotifyEvent("t", "c", 1))
            await replica.receive(local)
            await eventually(lambda: replica.notifier.stats()["mirrored"] == 1)
            await asyncio.to_thread(server.stop)

            slowest = 0.0
            for watermark in range(2, 102):
                started = time.perf_counter()
                await replica.notifier.apublish(NotifyEvent("t", "c", watermark))
                slowest = max(slowest, time.perf_counter() - started)
                self.assertEqual((await replica.receive(local))["watermark"], watermark)
            started = time.perf_counter()
            await asyncio.to_thread(replica.notifier.publish, NotifyEvent("t", "c", 102))
            slowest = max(slowest, time.perf_counter() - started)
            self.assertEqual((await replica.receive(local))["watermark"], 102)
            self.assertLess(slowest, 0.5)  # generous; the caller never waits on Redis
            await eventually(lambda: replica.notifier.stats()["mirror_failures"] >= 1)

            # Redis is back: the sender resumes without anyone restarting it.
            await asyncio.to_thread(server.start)
            client, pubsub = await raw_subscriber(server.url, channel)
            try:
                # Notifications still queued from the outage may arrive first: harmless
                # hints. What matters is that new ones get through.
                seen = []
                deadline = time.monotonic() + 10
                while 200 not in seen and time.monotonic() < deadline:
                    await replica.notifier.apublish(NotifyEvent("t", "c", 200))
                    payloads = await raw_messages(pubsub, 1)
                    seen.extend(wire.decode(p).new_watermark for p in payloads)
                self.assertIn(200, seen, "the sender never reached Redis again")
            finally:
                await pubsub.aclose()
                await client.aclose()
        finally:
            await replica.aclose()

    @requires_shared_redis
    async def test_a_round_trip_that_hangs_fails_after_socket_timeout_and_the_next_reconnects(self):
        # The sender's client has no per-reply timeout: the whole round trip has one. A frozen
        # link (socket open, nothing comes back) must fail that round trip, and the sender
        # must not reuse the connection it gave up on: the retry gets through a new one.
        proxy = await TcpProxy.start(int(SHARED_URL.rsplit(":", 1)[1].split("/")[0]))
        channel = unique_channel()
        notifier = RedisNotifier(f"redis://127.0.0.1:{proxy.port}/0", channel=channel,
                                 channel_layer=LocalChannelLayer(), socket_timeout=0.5)
        client, pubsub = await raw_subscriber(SHARED_URL, channel)
        try:
            await notifier.astart()
            await notifier.apublish(NotifyEvent("t", "c", 1))
            self.assertEqual([wire.decode(p).new_watermark
                              for p in await raw_messages(pubsub, 1)], [1])
            proxy.freeze()
            frozen_at = time.monotonic()
            await notifier.apublish(NotifyEvent("t", "c", 2))
            await eventually(lambda: notifier.stats()["mirror_failures"] >= 1)
            self.assertGreaterEqual(time.monotonic() - frozen_at, 0.45)
            self.assertEqual([wire.decode(p).new_watermark
                              for p in await raw_messages(pubsub, 1)], [2])
            await eventually(lambda: notifier.stats()["mirrored"] == 2)
        finally:
            await notifier.aclose()
            await pubsub.aclose()
            await client.aclose()
            await proxy.aclose()

    async def test_while_redis_is_down_every_publish_is_accounted_for(self):
        layer = LocalChannelLayer()
        notifier = RedisNotifier(closed_port_url(), channel=unique_channel(), capacity=10,
                                 channel_layer=layer)
        await notifier.astart()
        try:
            started = time.perf_counter()
            for watermark in range(200):
                await notifier.apublish(NotifyEvent("t", "c", watermark))
            self.assertLess(time.perf_counter() - started, 2.0)  # generous: no Redis waits
            stats = notifier.stats
            await eventually(lambda: stats()["mirror_failures"] >= 1)
            # One conversation: while Redis fails only its newest bump waits to be re-sent.
            self.assertGreater(stats()["mirror_dropped"], 0)
        finally:
            await notifier.aclose()
        stats = notifier.stats()
        self.assertEqual((stats["published"], stats["mirrored"]), (200, 0))
        # Each notification ends up sent, given up (queue full, unsent at shutdown) or
        # superseded by a newer one of its conversation.
        self.assertEqual(stats["mirror_dropped"] + stats["mirror_superseded"], 200)


class OutboundQueueTests(SimpleTestCase):
    def test_a_full_queue_drops_the_oldest(self):
        queue = SendQueue(3)
        self.assertEqual([queue.push((n, n)) for n in range(5)],
                         [False, False, False, True, True])
        self.assertEqual(list(queue.items), [(2, 2), (3, 3), (4, 4)])

    def test_batches_keep_order_and_size(self):
        queue = SendQueue(1000)
        for n in range(600):
            queue.push((n, n))
        batches = [queue.take(), queue.take(), queue.take(), queue.take()]
        self.assertEqual([len(b) for b in batches],
                         [BATCH_SIZE, BATCH_SIZE, 600 - 2 * BATCH_SIZE, 0])
        self.assertEqual(sum(batches, []), [(n, n) for n in range(600)])

    def test_a_failed_batch_goes_first_next_time_newest_per_conversation(self):
        queue = SendQueue(1000, b"resync")
        for item in [("a", 1), ("b", 1), ("a", 2)]:
            queue.push(item)
        batch = queue.take()
        queue.push(("a", 3))
        self.assertEqual(queue.failed(batch), (1, 0))  # ("a", 1) superseded by ("a", 2)
        self.assertEqual(queue.take(), [("b", 1), ("a", 2), ("a", 3)])
        self.assertFalse(queue.lost)

    def test_giving_up_on_failed_conversations_adds_one_resync_request(self):
        queue = SendQueue(2, b"resync")
        for key in "ab":
            queue.push((key, key))
        self.assertEqual(queue.failed(queue.take()), (0, 0))
        queue.push(("c", "c"))
        self.assertEqual(queue.failed(queue.take()), (0, 1))  # "a" given up
        self.assertTrue(queue.lost)
        self.assertEqual(queue.take(), [("b", "b"), ("c", "c"), (None, b"resync")])
        self.assertEqual(queue.take(), [])
        # A failed resync request is sent again with the next batch.
        queue.failed([(None, b"resync")])
        self.assertEqual(queue.take(), [(None, b"resync")])

    def test_an_overflowing_queue_asks_for_a_resync(self):
        queue = SendQueue(1, b"resync")
        queue.push(("a", 1))
        self.assertTrue(queue.push(("b", 1)))
        self.assertEqual(queue.take(), [("b", 1), (None, b"resync")])
        self.assertEqual(queue.discard(), 0)


@requires_shared_redis
class SyncPublisherTests(SimpleTestCase):
    def test_sync_publish_without_an_event_loop_reaches_redis(self):
        channel = unique_channel()
        client = redis.Redis.from_url(SHARED_URL)
        pubsub = client.pubsub()
        self.addCleanup(client.close)
        self.addCleanup(pubsub.close)
        pubsub.subscribe(channel)
        self.assertEqual(pubsub.get_message(timeout=TIMEOUT)["type"], "subscribe")

        notifier = RedisNotifier(SHARED_URL, channel=channel, channel_layer=LocalChannelLayer())
        self.addCleanup(notifier.close)
        events = [NotifyEvent("t", "c", n) for n in range(3)]
        publisher = threading.Thread(target=lambda: [notifier.publish(e) for e in events])
        publisher.start()
        publisher.join(TIMEOUT)
        for event in events:
            notifier.publish(event)
        self.assertTrue(notifier.flush(TIMEOUT))
        received = []
        while len(received) < 6:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=TIMEOUT)
            self.assertIsNotNone(message, f"only {len(received)} message(s) arrived")
            received.append(wire.decode(message["data"]))
        self.assertEqual([m.event for m in received], events + events)
        self.assertTrue(all(m.instance_id == notifier.instance_id for m in received))

    def test_a_shell_process_that_publishes_and_exits_reaches_redis(self):
        channel = unique_channel()
        client = redis.Redis.from_url(SHARED_URL)
        pubsub = client.pubsub()
        self.addCleanup(client.close)
        self.addCleanup(pubsub.close)
        pubsub.subscribe(channel)
        pubsub.get_message(timeout=TIMEOUT)
        code = (
            "from notifier.runtime import get_notifier\n"
            "from notifier.events import NotifyEvent\n"
            "get_notifier().publish(NotifyEvent('shell-tenant', 'shell-conv', 9))\n"
        )
        env = child_env(WEBCHAT_NOTIFIER_BACKEND="redis", REDIS_URL=SHARED_URL,
                        WEBCHAT_NOTIFIER_CHANNEL=channel)
        status, output, _ = run_manage("shell", "-c", code, env=env)
        self.assertEqual(status, 0, output)
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=TIMEOUT)
        self.assertIsNotNone(message, output)
        self.assertEqual(wire.decode(message["data"]).event,
                         NotifyEvent("shell-tenant", "shell-conv", 9))


class VerifyTests(SimpleTestCase):
    def test_closed_port_fails_fast_and_masks_the_password(self):
        url = closed_port_url(password="hunter2")
        started = time.monotonic()
        with self.assertRaises(BackplaneUnavailable) as caught:
            RedisNotifier(url).verify(timeout=2.0)
        self.assertLess(time.monotonic() - started, 2.5)
        self.assertIn(url.replace("hunter2", "***"), str(caught.exception))
        self.assertNotIn("hunter2", str(caught.exception))

    def test_an_invalid_url_fails_with_the_masked_url(self):
        with self.assertRaises(BackplaneUnavailable) as caught:
            RedisNotifier("redis://:hunter2@127.0.0.1:notaport/0").verify(timeout=2.0)
        self.assertIn("redis://:***@127.0.0.1:notaport/0", str(caught.exception))
        self.assertNotIn("hunter2", str(caught.exception))

    @requires_shared_redis
    def test_answering_redis_passes(self):
        self.assertIsNone(RedisNotifier(SHARED_URL).verify(timeout=2.0))
