"""Per-replica limits: sockets per conversation and tenant, replay size, frame size, idle."""

import asyncio

from asgiref.sync import sync_to_async
from django.test import TestCase, override_settings

from tests.support.streams import (
    TIMEOUT,
    assert_refused,
    bulk_activities,
    bump,
    communicator,
    make_conversation,
    receive_close,
    receive_set,
    stream_path,
    token_for,
)
from webchat.consumers import CloseCode
from webchat.limits import socket_slots

MIB = 1024 * 1024


class LimitTestMixin:
    def setUp(self):
        self.conversation = make_conversation()
        self.token = token_for(self.conversation)

    async def open(self, conversation=None, watermark=None):
        conversation = conversation or self.conversation
        path = stream_path(conversation.id, token_for(conversation), watermark)
        comm = communicator(path)
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        return comm


class SocketCountTests(LimitTestMixin, TestCase):
    async def test_five_sockets_per_conversation(self):
        open_ = [await self.open() for _ in range(5)]
        for comm in open_:
            self.assertTrue(await comm.receive_nothing(0.05))
        with self.assertLogs("webchat.consumers", "INFO") as logs:
            sixth = communicator(stream_path(self.conversation.id, self.token))
            await assert_refused(self, sixth, CloseCode.TOO_MANY_SOCKETS)
        self.assertIn("MAX_SOCKETS_PER_CONVERSATION", logs.output[0])
        # A slot given back can be taken again.
        await open_.pop().disconnect()
        open_.append(await self.open())
        self.assertTrue(await open_[-1].receive_nothing(0.05))
        for comm in open_:
            await comm.disconnect()
        key = (str(self.conversation.tenant_id), self.conversation.id)
        self.assertEqual(socket_slots.conversation_count(*key), 0)

    @override_settings(WEBCHAT_STREAM={"MAX_SOCKETS_PER_TENANT": 2})
    async def test_sockets_per_tenant(self):
        others = [await sync_to_async(make_conversation)() for _ in range(2)]
        first = await self.open()
        second = await self.open(others[0])
        with self.assertLogs("webchat.consumers", "INFO") as logs:
            third = communicator(stream_path(others[1].id, token_for(others[1])))
            await assert_refused(self, third, CloseCode.TOO_MANY_SOCKETS)
        self.assertIn("MAX_SOCKETS_PER_TENANT", logs.output[0])
        # Another tenant has its own budget.
        foreign = await sync_to_async(make_conversation)("globex")
        fourth = await self.open(foreign)
        for comm in (first, second, fourth):
            await comm.disconnect()


class ReplaySizeTests(LimitTestMixin, TestCase):
    def setUp(self):
        super().setUp()
        bulk_activities(self.conversation, 1001)

    async def test_replay_over_1000_sends_1000_then_4413_and_the_next_try_moves_on(self):
        # A bare refusal made directlinejs reconnect from the same watermark forever: now
        # each connection replays MAX_REPLAY and the reconnect gets the rest.
        comm = communicator(stream_path(self.conversation.id, self.token))
        with self.assertLogs("webchat.consumers", "INFO"):
            connected, _ = await comm.connect()
            self.assertTrue(connected)
            activities, watermark = await receive_set(self, comm)
            self.assertEqual((len(activities), watermark), (1000, 1000))
            self.assertEqual(await receive_close(self, comm), CloseCode.REPLAY_TOO_LARGE)
        await comm.disconnect()
        key = (str(self.conversation.tenant_id), self.conversation.id)
        self.assertEqual(socket_slots.conversation_count(*key), 0)
        again = await self.open(watermark=watermark)
        activities, watermark = await receive_set(self, again)
        self.assertEqual(([a["n"] for a in activities], watermark), ([1001], 1001))
        await again.disconnect()

    async def test_replay_of_exactly_1000_is_sent(self):
        comm = await self.open(watermark=1)
        activities, watermark = await receive_set(self, comm)
        self.assertEqual((len(activities), watermark), (1000, 1001))
        self.assertEqual([a["n"] for a in activities], list(range(2, 1002)))
        await comm.disconnect()


class FrameTests(LimitTestMixin, TestCase):
    async def test_empty_pings_are_ignored(self):
        comm = await self.open()
        for _ in range(3):
            await comm.send_input({"type": "websocket.receive", "text": ""})
        self.assertTrue(await comm.receive_nothing(0.1))
        # Still streaming.
        await sync_to_async(bulk_activities)(self.conversation, 1)
        await bump(self.conversation, 1)
        self.assertEqual((await receive_set(self, comm))[1], 1)
        await comm.disconnect()

    async def test_frame_of_1_mib_is_accepted(self):
        comm = await self.open()
        await comm.send_to(text_data="x" * MIB)
        await comm.send_to(bytes_data=b"x" * MIB)
        self.assertTrue(await comm.receive_nothing(0.1))
        await comm.disconnect()

    async def test_frames_over_1_mib_close_with_1009(self):
        frames = [
            {"text": "x" * (MIB + 1)},
            {"text": "é" * (MIB // 2 + 1)},  # fewer characters, more UTF-8 bytes
            {"bytes": b"x" * (MIB + 1)},
        ]
        for frame in frames:
            with self.subTest(kind=next(iter(frame))), self.assertLogs("webchat.consumers"):
                comm = await self.open()
                await comm.send_input({"type": "websocket.receive", **frame})
                self.assertEqual(await receive_close(self, comm), CloseCode.MESSAGE_TOO_BIG)
                await comm.disconnect()


@override_settings(WEBCHAT_STREAM={"IDLE_TIMEOUT": 0.3})
class IdleTests(LimitTestMixin, TestCase):
    async def test_idle_socket_is_closed(self):
        comm = await self.open()
        with self.assertLogs("webchat.consumers", "INFO") as logs:
            self.assertEqual(await receive_close(self, comm, TIMEOUT), CloseCode.IDLE_TIMEOUT)
        self.assertIn("idle", logs.output[0])
        await comm.disconnect()

    async def test_client_pings_keep_it_open(self):
        comm = await self.open()
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < 0.9:  # three idle periods
            await comm.send_input({"type": "websocket.receive", "text": ""})
            last_ping = loop.time()
            self.assertTrue(await comm.receive_nothing(0.1))
        with self.assertLogs("webchat.consumers", "INFO"):
            self.assertEqual(await receive_close(self, comm, TIMEOUT), CloseCode.IDLE_TIMEOUT)
        # Closed one idle period after the last ping, not after the first.
        self.assertGreaterEqual(loop.time() - last_ping, 0.3 - 0.05)
        await comm.disconnect()

    async def test_frames_sent_keep_it_open(self):
        comm = await self.open()
        for watermark in range(1, 7):  # two idle periods of deliveries
            await sync_to_async(bulk_activities)(self.conversation, 1)
            await bump(self.conversation, watermark)
            self.assertEqual((await receive_set(self, comm))[1], watermark)
            await asyncio.sleep(0.1)
        with self.assertLogs("webchat.consumers", "INFO"):
            self.assertEqual(await receive_close(self, comm, TIMEOUT), CloseCode.IDLE_TIMEOUT)
        await comm.disconnect()
