"""Gap-free delivery at the notifier level: resync after every (re)subscription, spread over
up to a second; a replica whose PUBLISH failed re-sends the newest bump of each conversation
once Redis is back, and asks its peers to resync when it had to give some up."""

import asyncio
import logging
import time
import uuid
from unittest import mock

import redis.asyncio as aioredis
from django.test import SimpleTestCase

from notifier import wire
from notifier.backends.redis import RedisNotifier
from notifier.events import NotifyEvent, group_name
from notifier.layers import LocalChannelLayer
from notifier.resync import MESSAGE_TYPE, PEER, RECONNECT, Resyncer, control_channel
from tests.support.redis_server import RedisServer, requires_redis_server, unique_channel
from tests.support.tcp_proxy import TcpProxy
from tests.test_notifier_redis import Replica, eventually, raw_messages, raw_subscriber


def resync_message(reason):
    """A resync message as consumers get it: stamped with the loop time its pass began."""
    return {"type": MESSAGE_TYPE, "reason": reason, "requested_at": mock.ANY}

TIMEOUT = 5  # generous: the machine is shared


def proxy_url(proxy):
    return f"redis://127.0.0.1:{proxy.port}/0"


async def members(layer, count, tenant="t"):
    """``count`` channels, each alone in the group of conversation ``c<i>``."""
    channels = []
    for index in range(count):
        channel = await layer.new_channel()
        await layer.group_add(group_name(tenant, f"c{index}"), channel)
        channels.append(channel)
    return channels


class ResyncerTests(SimpleTestCase):
    async def test_every_notifier_group_gets_one_resync_and_other_groups_none(self):
        layer = LocalChannelLayer()
        channels = await members(layer, 20)
        other = await layer.new_channel()
        await layer.group_add("someone-elses-group", other)
        resyncer = Resyncer(layer)
        await resyncer.request(RECONNECT)
        for channel in channels:
            message = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
            self.assertEqual(message, resync_message(RECONNECT))
        self.assertEqual(layer.stats()["queued"], 0)  # one each, none for the other group
        stats = resyncer.stats()
        self.assertEqual((stats[RECONNECT], stats["groups"]), (1, 20))
        self.assertEqual(stats["last"], {"reason": RECONNECT, "groups": 20,
                                         "spread_s": 20 / 1000, "done": True})

    def test_the_spread_grows_with_the_groups_up_to_one_second(self):
        resyncer = Resyncer(LocalChannelLayer())
        for groups, spread in ((0, 0.0), (10, 0.01), (500, 0.5), (1000, 1.0), (50_000, 1.0)):
            plan, actual = resyncer.schedule([f"g{n}" for n in range(groups)])
            self.assertEqual(actual, spread)
            offsets = [offset for offset, _ in plan]
            self.assertEqual(offsets, sorted(offsets))
            self.assertTrue(all(0 <= offset <= spread for offset in offsets))
            self.assertEqual(sorted(group for _, group in plan),
                             sorted(f"g{n}" for n in range(groups)))

    async def test_a_pass_is_spread_out_in_time(self):
        class TimedLayer(LocalChannelLayer):
            sent_at = []

            async def group_send(self, group, message):
                self.sent_at.append(time.monotonic())
                await super().group_send(group, message)

        layer = TimedLayer()
        await members(layer, 300)
        resyncer = Resyncer(layer)  # 300 groups at 1,000/s: over 0.3 s
        started = time.monotonic()
        await resyncer.request(RECONNECT)
        offsets = [at - started for at in layer.sent_at]
        self.assertEqual(len(offsets), 300)
        # Not all at once (the database would get 300 reads at the same moment), nor much
        # slower than the spread (generous: the machine is shared).
        self.assertGreater(max(offsets) - min(offsets), 0.2)
        self.assertLess(max(offsets), 2.0)
        # Spread, not bunched: each third of the 0.3 s gets some of the groups.
        thirds = [sum(1 for o in offsets if low <= o < low + 0.1) for low in (0, 0.1, 0.2)]
        self.assertTrue(all(count > 30 for count in thirds), thirds)

    async def test_a_new_request_restarts_the_pass(self):
        layer = LocalChannelLayer()
        channels = await members(layer, 200)
        resyncer = Resyncer(layer, max_spread=1.0, rate=100)  # a 1 s pass
        first = resyncer.request(RECONNECT)
        await asyncio.sleep(0.2)
        second = resyncer.request(PEER)
        await second
        self.assertTrue(first.cancelled())
        # Every group got the newer pass's message, whatever the first one had reached.
        reasons = []
        for channel in channels:
            while True:
                message = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
                if message["reason"] == PEER:
                    break
            reasons.append(message["reason"])
        self.assertEqual(reasons, [PEER] * 200)
        self.assertEqual(resyncer.stats()["last"]["reason"], PEER)

    async def test_a_layer_that_cannot_list_its_groups_is_counted_and_logged_once(self):
        class Opaque:
            async def group_send(self, group, message):
                raise AssertionError("not called")

        resyncer = Resyncer(Opaque())
        with self.assertLogs("notifier.resync", "WARNING") as logs:
            await resyncer.request(RECONNECT)
            await resyncer.request(RECONNECT)
        self.assertEqual(len(logs.output), 1)
        self.assertEqual(resyncer.stats()["unsupported"], 2)

    async def test_aclose_cancels_a_running_pass(self):
        layer = LocalChannelLayer()
        await members(layer, 50)
        resyncer = Resyncer(layer, rate=10)
        task = resyncer.request(RECONNECT)
        await asyncio.sleep(0.05)
        await resyncer.aclose()
        self.assertTrue(task.cancelled())
        self.assertLess(resyncer.stats()["groups"], 50)


@requires_redis_server
class ListenerResyncTests(SimpleTestCase):
    async def test_each_resubscription_resyncs_the_local_groups(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        replica = await Replica(server.url, unique_channel()).start()
        try:
            resyncer = replica.listener.resyncer
            await resyncer.wait()
            self.assertEqual(resyncer.stats()["connect"], 1)
            local = await replica.subscribe("t", "c")
            admin = aioredis.Redis.from_url(server.url)
            try:
                self.assertEqual(await admin.execute_command("CLIENT", "KILL", "TYPE",
                                                             "pubsub"), 1)
            finally:
                await admin.aclose()
            message = await replica.receive(local)
            self.assertEqual(message, resync_message(RECONNECT))
            self.assertEqual(replica.listener.counters["connects"], 2)

            # Redis restarted empty: the same again.
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            message = await replica.receive(local, timeout=10)
            self.assertEqual(message, resync_message(RECONNECT))
            self.assertEqual(resyncer.stats()[RECONNECT], 2)
        finally:
            await replica.aclose()

    async def test_a_subscriber_dropped_over_its_output_buffer_limit_resyncs(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        admin = aioredis.Redis.from_url(server.url)
        channel = unique_channel()
        layer = LocalChannelLayer()
        notifier = RedisNotifier(server.url, channel=channel, channel_layer=layer)

        async def slow_deliver(event):  # a listener that cannot keep up
            await asyncio.sleep(0.01)
            await notifier.local_send(event)

        listener = notifier.listener(deliver=slow_deliver)
        try:
            await admin.config_set("client-output-buffer-limit", "pubsub 32kb 16kb 1")
            await notifier.astart()
            listener.start()
            await listener.wait_connected(TIMEOUT)
            await listener.resyncer.wait()
            (member,) = await members(layer, 1)
            # 32 MB, more than the kernel's socket buffers hold, read too slowly.
            flood = wire.encode(NotifyEvent("t", "f" * 8192, 1), uuid.uuid4())
            for _ in range(4):
                async with admin.pipeline(transaction=False) as pipe:
                    for _ in range(1000):
                        pipe.publish(channel, flood)
                    await pipe.execute()
            message = await asyncio.wait_for(layer.receive(member), 15)
            self.assertEqual(message, resync_message(RECONNECT))
            self.assertGreaterEqual(listener.counters["disconnects"], 1)
            self.assertLess(listener.counters["received"], 4000)  # Redis dropped the rest
        finally:
            await listener.aclose()
            await notifier.aclose()
            await admin.aclose()

    async def test_failed_publishes_reach_the_other_replicas_once_redis_is_back(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        proxy = await TcpProxy.start(server.port)
        channel = unique_channel()
        # The publisher reaches Redis through a link we cut; the others stay connected.
        publisher = await Replica(proxy_url(proxy), channel).start()
        client, pubsub = await raw_subscriber(server.url, channel)
        try:
            proxy.cut()
            for watermark in range(1, 6):
                for conversation in ("c1", "c2"):
                    await publisher.notifier.apublish(NotifyEvent("t", conversation, watermark))
            await eventually(lambda: publisher.notifier.stats()["mirror_failures"] >= 1)
            proxy.restore()
            # The newest bump of each conversation arrives, late but it arrives.
            latest = {}
            deadline = time.monotonic() + 10
            while latest != {"c1": 5, "c2": 5} and time.monotonic() < deadline:
                for payload in await raw_messages(pubsub, 1):
                    message = wire.decode(payload)
                    latest[message.conversation_id] = message.new_watermark
            self.assertEqual(latest, {"c1": 5, "c2": 5})
            # Each bump was sent, or replaced by a newer one of its conversation.
            stats = publisher.notifier.stats
            await eventually(lambda: stats()["mirrored"] + stats()["mirror_superseded"] == 10)
            stats = stats()
            self.assertEqual(stats["mirror_dropped"], 0)
            self.assertEqual(stats["resync_requests"], 0)  # nothing was given up
        finally:
            await pubsub.aclose()
            await client.aclose()
            await publisher.aclose()
            await proxy.aclose()

    async def test_a_replica_that_gave_notifications_up_asks_its_peers_to_resync(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        proxy = await TcpProxy.start(server.port)
        channel = unique_channel()
        # Room for two conversations: bumps of the others are given up.
        publisher = await Replica(proxy_url(proxy), channel, capacity=2).start()
        peer = await Replica(server.url, channel).start()
        try:
            local = await peer.subscribe("t", "c0")
            proxy.cut()
            for conversation in ("c0", "c1", "c2", "c3"):
                await publisher.notifier.apublish(NotifyEvent("t", conversation, 1))
                await eventually(lambda: publisher.notifier.stats()["mirror_failures"] >= 1)
            proxy.restore()
            await eventually(lambda: publisher.notifier.stats()["resync_requests"] >= 1,
                             timeout=10)
            await eventually(lambda: peer.listener.resyncer.stats()[PEER] >= 1)
            self.assertGreater(publisher.notifier.stats()["mirror_dropped"], 0)
            self.assertEqual(peer.listener.counters["peer_resyncs"], 1)
            # The peer never lost its connection: the request alone made it resync.
            self.assertEqual(peer.listener.counters["connects"], 1)
            reasons = set()
            while PEER not in reasons:
                message = await peer.receive(local, timeout=10)
                reasons.add(message.get("reason"))
            # The publisher ignores its own request.
            self.assertEqual(publisher.listener.counters["peer_resyncs"], 0)
        finally:
            await peer.aclose()
            await publisher.aclose()
            await proxy.aclose()

    async def test_the_resync_request_is_on_its_own_channel_not_the_global_one(self):
        notifier = RedisNotifier("redis://unused", channel="greentic:webchat:notify")
        listener = notifier.listener()
        self.assertEqual(listener.channels, [
            "greentic:webchat:notify", "greentic:webchat:notify:resync",
            f"greentic:webchat:notify:probe:{notifier.instance_id}",
        ])
        self.assertEqual(control_channel("x"), "x:resync")
        with self.assertLogs("notifier.listener", logging.DEBUG):
            listener.dispatcher.control(b"not json")
        self.assertEqual(listener.counters["peer_resyncs"], 0)
