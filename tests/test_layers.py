"""LocalChannelLayer: channels' in-memory layer contract, capacity, expiry, cleanup, consumers."""

import asyncio

from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import SimpleTestCase, override_settings

from notifier.events import NotifyEvent, group_name, watermark_message
from notifier.layers import LocalChannelLayer

LOCAL_LAYER = {"default": {"BACKEND": "notifier.layers.LocalChannelLayer"}}


async def receive_within(layer, channel, timeout=2):
    return await asyncio.wait_for(layer.receive(channel), timeout)


class ContractTests(SimpleTestCase):
    """channels' tests/test_inmemorychannel.py, against this layer."""

    def setUp(self):
        self.layer = LocalChannelLayer(capacity=3)

    async def test_send_receive(self):
        await self.layer.send("test-channel-1", {"type": "test.message", "text": "Ahoy-hoy!"})
        message = await receive_within(self.layer, "test-channel-1")
        self.assertEqual(message, {"type": "test.message", "text": "Ahoy-hoy!"})

    async def test_send_capacity(self):
        for _ in range(3):
            await self.layer.send("test-channel-1", {"type": "test.message"})
        with self.assertRaises(ChannelFull):
            await self.layer.send("test-channel-1", {"type": "test.message"})

    async def test_process_local_send_receive(self):
        channel = await self.layer.new_channel()
        self.assertIn("!", channel)
        self.assertTrue(self.layer.require_valid_channel_name(channel))
        await self.layer.send(channel, {"type": "test.message", "text": "Local only please"})
        self.assertEqual((await receive_within(self.layer, channel))["text"], "Local only please")

    async def test_new_channels_are_distinct(self):
        names = {await self.layer.new_channel() for _ in range(1000)}
        self.assertEqual(len(names), 1000)

    async def test_multi_send_receive_keeps_order(self):
        for n in (1, 2, 3):
            await self.layer.send("test-channel-3", {"type": f"message.{n}"})
        for n in (1, 2, 3):
            self.assertEqual(
                (await receive_within(self.layer, "test-channel-3"))["type"], f"message.{n}"
            )

    async def test_groups_basic(self):
        for channel in ("test-gr-chan-1", "test-gr-chan-2", "test-gr-chan-3"):
            await self.layer.group_add("test-group", channel)
        await self.layer.group_discard("test-group", "test-gr-chan-2")
        await self.layer.group_send("test-group", {"type": "message.1"})
        self.assertEqual((await receive_within(self.layer, "test-gr-chan-1"))["type"], "message.1")
        self.assertEqual((await receive_within(self.layer, "test-gr-chan-3"))["type"], "message.1")
        with self.assertRaises(asyncio.TimeoutError):
            await receive_within(self.layer, "test-gr-chan-2", timeout=0.2)

    async def test_groups_channel_full_is_skipped_and_counted(self):
        await self.layer.group_add("test-group", "test-gr-chan-1")
        await self.layer.group_add("test-group", "test-gr-chan-2")
        for n in range(5):
            await self.layer.group_send("test-group", {"type": "message", "n": n})
        self.assertEqual(self.layer.stats()["dropped_full"], 4)
        # The queue keeps the first three (drop-newest, like ChannelFull), in order.
        got = [(await receive_within(self.layer, "test-gr-chan-1"))["n"] for _ in range(3)]
        self.assertEqual(got, [0, 1, 2])
        # A full member does not stop the others.
        await self.layer.group_send("test-group", {"type": "message", "n": 5})
        self.assertEqual((await receive_within(self.layer, "test-gr-chan-1"))["n"], 5)

    async def test_expiry_single(self):
        layer = LocalChannelLayer(expiry=0.1)
        await layer.send("test-channel-1", {"type": "message.1"})
        self.assertEqual(len(layer.channels), 1)
        await asyncio.sleep(0.15)
        with self.assertRaises(asyncio.TimeoutError):
            await receive_within(layer, "test-channel-1", timeout=0.3)
        self.assertEqual(len(layer.channels), 0)
        self.assertEqual(layer.stats()["expired"], 1)

    async def test_expiry_unread(self):
        layer = LocalChannelLayer(expiry=0.1)
        await layer.send("test-channel-1", {"type": "message.1"})
        await asyncio.sleep(0.15)
        await layer.send("test-channel-2", {"type": "message.2"})
        self.assertEqual(len(layer.channels), 2)
        self.assertEqual((await receive_within(layer, "test-channel-2"))["type"], "message.2")
        self.assertEqual(len(layer.channels), 0)

    async def test_expiry_multi(self):
        layer = LocalChannelLayer(expiry=0.1)
        for n in (1, 2, 3):
            await layer.send("test-channel-1", {"type": f"message.{n}"})
        self.assertEqual((await receive_within(layer, "test-channel-1"))["type"], "message.1")
        await asyncio.sleep(0.15)
        await layer.send("test-channel-1", {"type": "message.4"})
        self.assertEqual((await receive_within(layer, "test-channel-1"))["type"], "message.4")
        with self.assertRaises(asyncio.TimeoutError):
            await receive_within(layer, "test-channel-1", timeout=0.3)
        self.assertEqual(len(layer.channels), 0)

    async def test_extensions(self):
        self.assertEqual(set(self.layer.extensions), {"groups", "flush"})

    async def test_bad_names_and_messages(self):
        with self.assertRaises(TypeError):
            await self.layer.send("bad name", {"type": "x"})
        with self.assertRaises(TypeError):
            await self.layer.group_add("bad|group", "chan")
        with self.assertRaises(TypeError):
            await self.layer.group_send("g" * 100, {"type": "x"})
        with self.assertRaises(TypeError):
            await self.layer.receive("x" * 100)
        with self.assertRaises(TypeError):
            await self.layer.send("chan", ["not", "a", "dict"])
        with self.assertRaises(ValueError):
            await self.layer.send("chan", {"type": "x", "__asgi_channel__": "y"})
        self.assertEqual(self.layer.stats()["channels"], 0)


class BehaviourTests(SimpleTestCase):
    async def test_waiting_receiver_gets_the_message_directly(self):
        layer = LocalChannelLayer(capacity=1)
        receiver = asyncio.create_task(layer.receive("chan"))
        await asyncio.sleep(0)
        # Capacity counts queued messages only: a handed-over one never fills the queue.
        await layer.send("chan", {"type": "a"})
        await layer.send("chan", {"type": "b"})
        self.assertEqual((await receiver)["type"], "a")
        self.assertEqual((await receive_within(layer, "chan"))["type"], "b")
        self.assertEqual(layer.stats()["queued"], 0)

    async def test_receivers_are_served_in_arrival_order(self):
        layer = LocalChannelLayer()
        first = asyncio.create_task(layer.receive("chan"))
        await asyncio.sleep(0)
        second = asyncio.create_task(layer.receive("chan"))
        await asyncio.sleep(0)
        await layer.send("chan", {"type": "a"})
        await layer.send("chan", {"type": "b"})
        self.assertEqual([(await first)["type"], (await second)["type"]], ["a", "b"])

    async def test_cancelled_receive_leaves_nothing_behind(self):
        layer = LocalChannelLayer()
        with self.assertRaises(asyncio.TimeoutError):
            await receive_within(layer, "chan", timeout=0.05)
        self.assertEqual(layer.channels, {})
        await layer.send("chan", {"type": "after"})
        self.assertEqual((await receive_within(layer, "chan"))["type"], "after")

    async def test_cancelled_after_handover_loses_no_message(self):
        layer = LocalChannelLayer()
        receiver = asyncio.create_task(layer.receive("chan"))
        await asyncio.sleep(0)
        await layer.send("chan", {"type": "precious"})
        receiver.cancel()  # before it runs again to pick the message up
        with self.assertRaises(asyncio.CancelledError):
            await receiver
        self.assertEqual((await receive_within(layer, "chan"))["type"], "precious")
        self.assertEqual(layer.channels, {})

    async def test_a_message_given_back_goes_to_the_next_waiting_receiver(self):
        layer = LocalChannelLayer()
        first = asyncio.create_task(layer.receive("chan"))
        await asyncio.sleep(0)
        second = asyncio.create_task(layer.receive("chan"))
        await asyncio.sleep(0)
        await layer.send("chan", {"type": "precious"})
        first.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await first
        self.assertEqual((await asyncio.wait_for(second, 2))["type"], "precious")
        self.assertEqual(layer.stats()["queued"], 0)

    async def test_each_receiver_gets_its_own_copy(self):
        layer = LocalChannelLayer()
        for channel in ("a", "b"):
            await layer.group_add("g", channel)
        flat = {"type": "flat", "n": 1}
        nested = {"type": "nested", "items": [1, 2]}
        await layer.group_send("g", flat)
        await layer.group_send("g", nested)
        flat["n"] = 99
        nested["items"].append(99)
        a_flat, b_flat = await receive_within(layer, "a"), await receive_within(layer, "b")
        a_flat["n"] = 7
        self.assertEqual(b_flat["n"], 1)
        a_nested, b_nested = await receive_within(layer, "a"), await receive_within(layer, "b")
        a_nested["items"].append(3)
        self.assertEqual(b_nested["items"], [1, 2])

    async def test_channel_capacity_overrides(self):
        layer = LocalChannelLayer(capacity=5, channel_capacity={"small.*": 1})
        await layer.send("small.one", {"type": "x"})
        with self.assertRaises(ChannelFull):
            await layer.send("small.one", {"type": "x"})
        for _ in range(5):
            await layer.send("big.one", {"type": "x"})

    def test_capacity_must_be_positive(self):
        for capacity in (0, -1, "10", True):
            with self.subTest(capacity=capacity), self.assertRaisesMessage(ValueError, "capacity"):
                LocalChannelLayer(capacity=capacity)

    async def test_many_groups_send_reaches_only_the_members(self):
        layer = LocalChannelLayer()
        for n in range(10_000):
            await layer.group_add(f"group.{n}", f"chan.{n}")
        await layer.group_add("group.42", "chan.extra")
        await layer.group_send("group.42", {"type": "hit"})
        self.assertEqual(layer.stats()["queued"], 2)
        self.assertEqual(set(layer.channels), {"chan.42", "chan.extra"})
        self.assertEqual((await receive_within(layer, "chan.extra"))["type"], "hit")

    async def test_group_send_to_an_empty_group(self):
        layer = LocalChannelLayer()
        await layer.group_send("nobody.here", {"type": "x"})
        await layer.group_add("g", "c")
        await layer.group_discard("g", "c")
        await layer.group_send("g", {"type": "x"})
        self.assertEqual(layer.stats(), LocalChannelLayer().stats())

    async def test_expired_message_takes_its_channel_out_of_every_group(self):
        layer = LocalChannelLayer(expiry=0.05)
        for group in ("g1", "g2", "g3"):
            await layer.group_add(group, "dead")
            await layer.group_add(group, "alive")
        await layer.group_send("g1", {"type": "x"})
        await receive_within(layer, "alive")
        await asyncio.sleep(0.1)
        await layer.group_send("g2", {"type": "y"})  # finds "dead"'s message expired
        self.assertEqual(
            layer.groups, {g: {"alive": layer.groups[g]["alive"]} for g in layer.groups}
        )
        self.assertEqual(set(layer.groups), {"g1", "g2", "g3"})
        self.assertEqual(layer.stats()["memberships"], 3)
        self.assertEqual((await receive_within(layer, "alive"))["type"], "y")

    async def test_group_expiry(self):
        layer = LocalChannelLayer(group_expiry=0.05)
        await layer.group_add("g", "old")
        await asyncio.sleep(0.1)
        await layer.group_add("g", "new")
        await layer.group_send("g", {"type": "x"})
        self.assertEqual(list(layer.groups["g"]), ["new"])
        self.assertEqual(layer.stats()["memberships"], 1)

    async def test_rejoining_renews_a_membership(self):
        layer = LocalChannelLayer(group_expiry=0.2)
        await layer.group_add("g", "c")
        await asyncio.sleep(0.15)
        await layer.group_add("g", "c")
        await asyncio.sleep(0.1)
        await layer.group_send("g", {"type": "x"})
        self.assertEqual((await receive_within(layer, "c"))["type"], "x")

    async def test_bookkeeping_stays_bounded(self):
        layer = LocalChannelLayer()
        for n in range(5000):
            await layer.send("chan", {"type": "x", "n": n})
            await layer.receive("chan")
            await layer.group_add("g", "chan")
            await layer.group_discard("g", "chan")
        self.assertLessEqual(len(layer._expiries), 1024 + 1)
        self.assertLessEqual(len(layer._joins), 1024 + 1)
        self.assertEqual(layer.stats()["channels"], 0)
        self.assertEqual(layer.stats()["groups"], 0)

    async def test_a_member_keeps_its_state_between_messages_until_it_leaves_its_groups(self):
        layer = LocalChannelLayer()
        await layer.group_add("g1", "c")
        await layer.group_add("g2", "c")
        self.assertEqual(layer.channels, {})  # nothing until a message or a receiver comes
        await layer.group_send("g1", {"type": "x"})
        self.assertEqual((await receive_within(layer, "c"))["type"], "x")
        state = layer.channels["c"]
        receiver = asyncio.create_task(layer.receive("c"))
        await asyncio.sleep(0)
        await layer.group_send("g2", {"type": "y"})
        self.assertEqual((await receiver)["type"], "y")
        self.assertIs(layer.channels["c"], state)  # reused, not rebuilt per message
        await layer.group_discard("g1", "c")
        self.assertIs(layer.channels["c"], state)  # still in g2
        await layer.group_discard("g2", "c")
        self.assertEqual(layer.channels, {})
        self.assertEqual(layer.stats(), {**LocalChannelLayer().stats()})

    async def test_a_member_with_a_waiting_receiver_goes_once_the_receiver_is_done(self):
        layer = LocalChannelLayer()
        await layer.group_add("g", "c")
        receiver = asyncio.create_task(layer.receive("c"))
        await asyncio.sleep(0)
        await layer.group_discard("g", "c")
        self.assertIn("c", layer.channels)  # its receiver still waits
        await layer.send("c", {"type": "direct"})
        self.assertEqual((await receiver)["type"], "direct")
        self.assertEqual(layer.channels, {})

    async def test_flush(self):
        layer = LocalChannelLayer()
        await layer.group_add("g", "c")
        await layer.send("c", {"type": "old"})
        waiting = asyncio.create_task(layer.receive("w"))
        await asyncio.sleep(0)
        await layer.flush()
        self.assertEqual((layer.groups, layer.stats()["queued"]), ({}, 0))
        await layer.group_send("g", {"type": "nobody"})
        await layer.send("w", {"type": "new"})
        self.assertEqual((await asyncio.wait_for(waiting, 2))["type"], "new")
        with self.assertRaises(asyncio.TimeoutError):
            await receive_within(layer, "c", timeout=0.05)
        self.assertEqual(layer.channels, {})


class WatermarkConsumer(AsyncJsonWebsocketConsumer):
    """Joins the groups of the conversations in its URL's query string."""

    async def connect(self):
        query = self.scope["query_string"].decode()
        self.groups = [group_name("tenant", conversation) for conversation in query.split(",")]
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def webchat_watermark(self, event):
        await self.send_json(event)


@override_settings(CHANNEL_LAYERS=LOCAL_LAYER)
class ConsumerTests(SimpleTestCase):
    async def connect(self, conversations):
        communicator = WebsocketCommunicator(WatermarkConsumer.as_asgi(), f"/ws?{conversations}")
        connected, _ = await communicator.connect()
        self.assertTrue(connected)
        return communicator

    async def test_group_messages_reach_consumers(self):
        layer = get_channel_layer()
        self.assertIsInstance(layer, LocalChannelLayer)
        one = await self.connect("c1")
        both = await self.connect("c1,c2")
        other = await self.connect("c3")
        event = NotifyEvent("tenant", "c1", 7)
        await layer.group_send(group_name("tenant", "c1"), watermark_message(event))
        expected = {
            "type": "webchat.watermark",
            "tenant_id": "tenant",
            "conversation_id": "c1",
            "watermark": 7,
        }
        self.assertEqual(await one.receive_json_from(timeout=2), expected)
        self.assertEqual(await both.receive_json_from(timeout=2), expected)
        self.assertTrue(await other.receive_nothing(timeout=0.1))
        await layer.group_send(
            group_name("tenant", "c2"), watermark_message(NotifyEvent("tenant", "c2", 8))
        )
        self.assertEqual((await both.receive_json_from(timeout=2))["watermark"], 8)
        self.assertTrue(await one.receive_nothing(timeout=0.1))
        for communicator in (one, both, other):
            await communicator.disconnect()
        # Disconnecting discards every membership and every channel: nothing leaks.
        self.assertEqual(
            layer.stats(),
            {**LocalChannelLayer().stats(), "dropped_full": 0, "expired": 0},
        )


class DefaultLayerTests(SimpleTestCase):
    def test_project_default_is_the_local_layer(self):
        layer = get_channel_layer()
        self.assertIsInstance(layer, LocalChannelLayer)
        self.assertGreaterEqual(layer.capacity, 1)
