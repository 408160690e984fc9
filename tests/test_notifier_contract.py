"""One contract, two notifiers: InMemoryNotifier and RedisNotifier (real Redis) behave alike
for local delivery, from async code, from sync threads and from code without a loop."""

import asyncio
import threading

from asgiref.sync import async_to_sync, sync_to_async
from django.test import SimpleTestCase

from notifier.backends.memory import InMemoryNotifier
from notifier.backends.redis import RedisNotifier
from notifier.events import NotifyEvent, group_name, watermark_message
from notifier.layers import LocalChannelLayer
from tests.support.redis_server import SHARED_URL, requires_shared_redis, unique_channel

TIMEOUT = 5  # generous: nothing here measures speed


class RecordingLayer(LocalChannelLayer):
    """The real local layer, remembering which thread each group_send ran on."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.send_threads = []

    async def group_send(self, group, message):
        self.send_threads.append(threading.get_ident())
        await super().group_send(group, message)


class FailingLayer(LocalChannelLayer):
    """Failure injection: every group_send raises."""

    async def group_send(self, group, message):
        raise RuntimeError("layer is broken")


class NotifierContract:
    """Mixed into a SimpleTestCase per backend; ``make_notifier(layer)`` builds one."""

    def make_notifier(self, layer):
        raise NotImplementedError

    async def subscribe(self, layer, tenant_id, conversation_id):
        channel = await layer.new_channel()
        await layer.group_add(group_name(tenant_id, conversation_id), channel)
        return channel

    async def receive(self, layer, channel):
        return await asyncio.wait_for(layer.receive(channel), TIMEOUT)

    async def assert_nothing(self, layer, channel, wait=0.2):
        with self.assertRaises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), wait)

    async def started(self, layer):
        notifier = self.make_notifier(layer)
        await notifier.astart()
        return notifier

    async def test_apublish_reaches_each_member_once_and_no_other_group(self):
        layer = LocalChannelLayer()
        notifier = await self.started(layer)
        try:
            first = await self.subscribe(layer, "tenant-a", "conv-1")
            second = await self.subscribe(layer, "tenant-a", "conv-1")
            other = await self.subscribe(layer, "tenant-a", "conv-2")
            event = NotifyEvent("tenant-a", "conv-1", 7)
            await notifier.apublish(event)
            for channel in (first, second):
                self.assertEqual(await self.receive(layer, channel), watermark_message(event))
                await self.assert_nothing(layer, channel)
            await self.assert_nothing(layer, other)
            self.assertEqual(notifier.stats()["published"], 1)
        finally:
            await notifier.aclose()

    async def test_any_ids_reach_their_own_group_only(self):
        layer = LocalChannelLayer()
        notifier = await self.started(layer)
        try:
            pairs = [("ténant", "会话|1"), ("a|", "b"), ("a", "|b"), ("with space", "x" * 1024)]
            channels = [await self.subscribe(layer, *pair) for pair in pairs]
            for number, pair in enumerate(pairs):
                await notifier.apublish(NotifyEvent(*pair, number))
            for number, (pair, channel) in enumerate(zip(pairs, channels, strict=True)):
                message = await self.receive(layer, channel)
                self.assertEqual(
                    (message["tenant_id"], message["conversation_id"], message["watermark"]),
                    (*pair, number),
                )
                await self.assert_nothing(layer, channel, wait=0.05)
        finally:
            await notifier.aclose()

    async def test_publish_from_a_sync_to_async_thread_runs_on_the_home_loop(self):
        layer = RecordingLayer()
        notifier = await self.started(layer)
        try:
            channel = await self.subscribe(layer, "t", "c")
            await sync_to_async(notifier.publish)(NotifyEvent("t", "c", 3))
            self.assertEqual((await self.receive(layer, channel))["watermark"], 3)
            self.assertEqual(layer.send_threads, [threading.get_ident()])
        finally:
            await notifier.aclose()

    async def test_publish_from_a_plain_thread_hops_to_the_home_loop(self):
        layer = RecordingLayer()
        notifier = await self.started(layer)
        try:
            channel = await self.subscribe(layer, "t", "c")
            thread = threading.Thread(target=notifier.publish, args=(NotifyEvent("t", "c", 4),))
            thread.start()
            message = await self.receive(layer, channel)
            await asyncio.to_thread(thread.join)
            self.assertEqual(message["watermark"], 4)
            self.assertEqual(layer.send_threads, [threading.get_ident()])
        finally:
            await notifier.aclose()

    async def test_sync_publish_on_the_loop_thread_is_scheduled_not_run_inline(self):
        layer = LocalChannelLayer()
        notifier = await self.started(layer)
        try:
            channel = await self.subscribe(layer, "t", "c")
            self.assertIsNone(notifier.publish(NotifyEvent("t", "c", 5)))
            self.assertEqual((await self.receive(layer, channel))["watermark"], 5)
        finally:
            await notifier.aclose()

    def test_publish_without_any_event_loop(self):
        layer = LocalChannelLayer()
        notifier = self.make_notifier(layer)
        self.addCleanup(notifier.close)
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(group_name("t", "c"), channel)
        notifier.publish(NotifyEvent("t", "c", 6))
        message = async_to_sync(layer.receive)(channel)
        self.assertEqual(message, watermark_message(NotifyEvent("t", "c", 6)))

    async def test_a_failing_layer_is_logged_and_counted_never_raised(self):
        notifier = await self.started(FailingLayer())
        try:
            with self.assertLogs("notifier.backends.base", "WARNING") as logs:
                await notifier.apublish(NotifyEvent("t", "c", 1))
                notifier.publish(NotifyEvent("t", "c", 2))
                await asyncio.sleep(0.05)
            self.assertEqual(notifier.stats()["local_failures"], 2)
            self.assertIn("layer is broken", "\n".join(logs.output))
        finally:
            await notifier.aclose()

    async def test_local_send_nowait_delivers_at_once_with_the_local_layer(self):
        layer = LocalChannelLayer()
        notifier = self.make_notifier(layer)
        channel = await self.subscribe(layer, "t", "c")
        self.assertTrue(notifier.local_send_nowait(NotifyEvent("t", "c", 4)))
        self.assertEqual(layer.stats()["queued"], 1)  # already there, nothing awaited
        self.assertEqual(await self.receive(layer, channel),
                         watermark_message(NotifyEvent("t", "c", 4)))

    async def test_local_send_nowait_leaves_other_layers_to_local_send(self):
        from channels.layers import InMemoryChannelLayer

        # An overridden group_send (here: recording) must be awaited, as must other layers.
        for layer in (RecordingLayer(), InMemoryChannelLayer()):
            notifier = self.make_notifier(layer)
            channel = await self.subscribe(layer, "t", "c")
            self.assertFalse(notifier.local_send_nowait(NotifyEvent("t", "c", 1)))
            await self.assert_nothing(layer, channel, wait=0.05)
        self.assertTrue(self.make_notifier(None).local_send_nowait(NotifyEvent("t", "c", 1)))

    async def test_local_send_nowait_logs_and_counts_failures(self):
        class Broken(LocalChannelLayer):
            def group_send_nowait(self, group, message):
                raise RuntimeError("layer is broken")

        notifier = self.make_notifier(Broken())
        with self.assertLogs("notifier.backends.base", "WARNING") as logs:
            self.assertTrue(notifier.local_send_nowait(NotifyEvent("t", "c", 1)))
        self.assertEqual(notifier.stats()["local_failures"], 1)
        self.assertIn("layer is broken", "\n".join(logs.output))

    async def test_no_channel_layer_is_not_an_error(self):
        notifier = self.make_notifier(None)
        notifier._channel_layer = None  # an app without CHANNEL_LAYERS
        await notifier.astart()
        try:
            await notifier.apublish(NotifyEvent("t", "c", 1))
            self.assertEqual(notifier.stats()["local_failures"], 0)
        finally:
            await notifier.aclose()


class InMemoryNotifierContractTests(NotifierContract, SimpleTestCase):
    def make_notifier(self, layer):
        return InMemoryNotifier(channel_layer=layer)

    def test_memory_has_no_listener_and_nothing_to_verify(self):
        notifier = InMemoryNotifier()
        self.assertIsNone(notifier.listener())
        self.assertIsNone(notifier.verify(timeout=0.01))


@requires_shared_redis
class RedisNotifierContractTests(NotifierContract, SimpleTestCase):
    def make_notifier(self, layer):
        return RedisNotifier(SHARED_URL, channel=unique_channel(), channel_layer=layer)

    async def test_the_listener_awaits_a_group_send_it_cannot_call_synchronously(self):
        channel = unique_channel()
        layer = RecordingLayer()
        receiver = RedisNotifier(SHARED_URL, channel=channel, channel_layer=layer)
        sender = RedisNotifier(SHARED_URL, channel=channel, channel_layer=LocalChannelLayer())
        listener = receiver.listener(probe=False, resync=False)
        local = await self.subscribe(layer, "t", "c")
        await sender.astart()
        listener.start()
        try:
            await listener.wait_connected(TIMEOUT)
            await sender.apublish(NotifyEvent("t", "c", 9))
            self.assertEqual((await self.receive(layer, local))["watermark"], 9)
            self.assertEqual(len(layer.send_threads), 1)  # through its group_send
        finally:
            await listener.aclose()
            await sender.aclose()
