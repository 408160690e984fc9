"""Replay from the client's watermark, live delivery on notifications, coalescing, cleanup."""

import asyncio
from unittest import mock

from asgiref.sync import sync_to_async
from django.test import TestCase, TransactionTestCase, override_settings

from tests.support.streams import (
    RecordingStreamConsumer,
    append,
    assert_refused,
    bulk_activities,
    bump,
    communicator,
    group_members,
    make_conversation,
    receive_close,
    receive_set,
    stream_path,
    token_for,
)
from webchat.consumers import CloseCode
from webchat.limits import socket_slots


class StreamTestMixin:
    def setUp(self):
        RecordingStreamConsumer.instances.clear()
        self.conversation = make_conversation()
        self.token = token_for(self.conversation)
        self.group_id = (str(self.conversation.tenant_id), self.conversation.id)

    async def open(self, watermark=None):
        comm = communicator(stream_path(self.conversation.id, self.token, watermark))
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        return comm

    async def collect_until(self, comm, watermark):
        """Receive frames until ``watermark``; return every activity number in order."""
        numbers, last = [], None
        while last != watermark:
            activities, last = await receive_set(self, comm)
            numbers.extend(a.get("n", a.get("text")) for a in activities)
            self.assertEqual(activities[-1]["id"], f"{self.conversation.id}|{last:07d}")
        return numbers


class ReplayTests(StreamTestMixin, TestCase):
    def setUp(self):
        super().setUp()
        bulk_activities(self.conversation, 5)

    async def test_replay_from_the_start(self):
        for watermark in (None, ""):
            with self.subTest(watermark=watermark):
                comm = await self.open(watermark)
                activities, last = await receive_set(self, comm)
                self.assertEqual([a["n"] for a in activities], [1, 2, 3, 4, 5])
                self.assertEqual(last, 5)
                self.assertTrue(await comm.receive_nothing(0.1))
                await comm.disconnect()

    async def test_replay_after_watermark(self):
        comm = await self.open(2)
        activities, last = await receive_set(self, comm)
        self.assertEqual(([a["n"] for a in activities], last), ([3, 4, 5], 5))
        await comm.disconnect()

    async def test_nothing_to_replay_sends_nothing(self):
        comm = await self.open(5)
        self.assertTrue(await comm.receive_nothing(0.2))
        self.assertEqual(RecordingStreamConsumer.instances[0].cursor, 5)
        await comm.disconnect()

    async def test_live_after_replay_without_repeats(self):
        comm = await self.open(3)
        self.assertEqual((await receive_set(self, comm))[1], 5)
        await sync_to_async(bulk_activities)(self.conversation, 2)
        await bump(self.conversation, 6)  # a stale bump: already covered below
        await bump(self.conversation, 7)
        numbers = await self.collect_until(comm, 7)
        self.assertEqual(numbers, [6, 7])
        await bump(self.conversation, 5)  # below the cursor: ignored
        await bump(self.conversation, 7)  # already sent: ignored
        self.assertTrue(await comm.receive_nothing(0.2))
        await comm.disconnect()

    async def test_bump_for_nothing_new_does_not_block_later_ones(self):
        comm = await self.open(5)
        reads = RecordingStreamConsumer.instances[0]
        await bump(self.conversation, 10**12)  # bogus: the database has nothing there
        self.assertTrue(await comm.receive_nothing(0.2))
        await sync_to_async(bulk_activities)(self.conversation, 1)
        await bump(self.conversation, 6)
        self.assertEqual(await self.collect_until(comm, 6), [6])
        self.assertGreaterEqual(reads.reads, 2)
        await comm.disconnect()

    async def test_notifications_of_other_conversations_are_ignored(self):
        comm = await self.open(5)
        consumer = RecordingStreamConsumer.instances[0]
        await asyncio.wait_for(consumer._reader, 5)  # the initial read is over
        await consumer.webchat_watermark(
            {"type": "webchat.watermark", "tenant_id": "x", "conversation_id": "y", "watermark": 9}
        )
        await consumer.webchat_watermark(
            {
                "type": "webchat.watermark",
                "tenant_id": self.group_id[0],
                "conversation_id": self.conversation.id,
                "watermark": True,
            }
        )
        self.assertEqual((consumer.wanted, consumer.reads), (5, 1))
        await comm.disconnect()

    async def test_coalescing_many_bumps_few_reads(self):
        comm = await self.open(5)
        self.assertTrue(await comm.receive_nothing(0.1))
        consumer = RecordingStreamConsumer.instances[0]
        reads_before = consumer.reads
        await sync_to_async(bulk_activities)(self.conversation, 50)
        for watermark in range(6, 56):
            await bump(self.conversation, watermark)
        numbers = await self.collect_until(comm, 55)
        self.assertEqual(numbers, list(range(6, 56)))
        self.assertTrue(await comm.receive_nothing(0.2))
        # One read, plus at most one more for the bumps that arrived during it.
        self.assertLessEqual(consumer.reads - reads_before, 2)
        await comm.disconnect()

    async def test_interleaved_writes_and_bumps_arrive_once_in_order(self):
        comm = await self.open(5)
        consumer = RecordingStreamConsumer.instances[0]
        reads_before = consumer.reads
        for watermark in range(6, 106):
            await sync_to_async(bulk_activities)(self.conversation, 1)
            await bump(self.conversation, watermark)
        self.assertEqual(await self.collect_until(comm, 105), list(range(6, 106)))
        self.assertTrue(await comm.receive_nothing(0.2))
        self.assertLessEqual(consumer.reads - reads_before, 100)
        await comm.disconnect()

    async def test_close_leaves_the_group_and_frees_the_slot(self):
        comm = await self.open(5)
        consumer = RecordingStreamConsumer.instances[0]
        self.assertEqual(group_members(self.conversation), {consumer.channel_name})
        self.assertEqual(socket_slots.conversation_count(*self.group_id), 1)
        await comm.disconnect()
        self.assertEqual(group_members(self.conversation), set())
        self.assertEqual(socket_slots.conversation_count(*self.group_id), 0)
        self.assertEqual(socket_slots.tenant_count(self.group_id[0]), 0)

    async def test_cancelled_consumer_cleans_up_its_reader(self):
        comm = await self.open(5)
        consumer = RecordingStreamConsumer.instances[0]
        await asyncio.wait_for(consumer._reader, 5)  # the initial read is over
        started = asyncio.Event()
        release = asyncio.Event()

        async def slow_drain(first=False):
            started.set()
            await release.wait()

        consumer._drain = slow_drain
        await bump(self.conversation, 6)
        await asyncio.wait_for(started.wait(), 5)
        reader = consumer._reader
        comm.future.cancel()  # the server gives up on the application
        with self.assertRaises(asyncio.CancelledError):
            await comm.future
        self.assertTrue(reader.cancelled())
        self.assertEqual(group_members(self.conversation), set())
        self.assertEqual(socket_slots.conversation_count(*self.group_id), 0)

    async def test_read_failure_closes_with_4500(self):
        comm = await self.open(5)
        with (
            mock.patch("webchat.consumers.stream_page", side_effect=RuntimeError("db down")),
            self.assertLogs("webchat.consumers", "ERROR"),
        ):
            await bump(self.conversation, 6)
            self.assertEqual(await receive_close(self, comm), CloseCode.SERVER_ERROR)
        await comm.disconnect()

    async def test_database_failure_at_connect_refuses_with_4500(self):
        comm = communicator(stream_path(self.conversation.id, self.token))
        with (
            mock.patch("webchat.consumers._conversation_state", side_effect=RuntimeError("down")),
            self.assertLogs("webchat.consumers", "ERROR"),
        ):
            await assert_refused(self, comm, CloseCode.SERVER_ERROR)
        self.assertEqual(socket_slots.conversation_count(*self.group_id), 0)


class SignalPathTests(StreamTestMixin, TransactionTestCase):
    """append_activity -> watermark_bumped -> notifier (configured backend) -> the socket."""

    async def test_live_delivery_through_the_notifier(self):
        comm = await self.open()
        self.assertTrue(await comm.receive_nothing(0.1))
        for text in ("one", "two", "three"):
            await append(self.conversation, text)
        self.assertEqual(await self.collect_until(comm, 3), ["one", "two", "three"])
        self.assertTrue(await comm.receive_nothing(0.2))
        await comm.disconnect()

    async def test_concurrent_writers_one_socket_gets_each_once_in_order(self):
        comm = await self.open()

        async def writer(prefix):
            for i in range(15):
                await append(self.conversation, f"{prefix}{i}")

        await asyncio.gather(writer("a"), writer("b"))
        texts = await self.collect_until(comm, 30)
        self.assertEqual(
            sorted(texts), sorted([f"a{i}" for i in range(15)] + [f"b{i}" for i in range(15)])
        )
        # Each writer's activities arrive in the order it wrote them.
        for prefix in "ab":
            self.assertEqual(
                [t for t in texts if t.startswith(prefix)], [f"{prefix}{i}" for i in range(15)]
            )
        self.assertTrue(await comm.receive_nothing(0.2))
        await comm.disconnect()


@override_settings(
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "notifier.layers.LocalChannelLayer",
            "CONFIG": {"group_expiry": 0.6},
        }
    },
    WEBCHAT_STREAM={"IDLE_TIMEOUT": 0.1},
)
class GroupMembershipTests(StreamTestMixin, TestCase):
    async def test_membership_is_renewed_before_the_layer_expires_it(self):
        comm = await self.open()
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < 2.0:  # more than three group_expiry periods
            await comm.send_input({"type": "websocket.receive", "text": ""})
            await asyncio.sleep(0.03)
        await sync_to_async(bulk_activities)(self.conversation, 1)
        await bump(self.conversation, 1)
        self.assertEqual((await receive_set(self, comm))[1], 1)
        await comm.disconnect()
