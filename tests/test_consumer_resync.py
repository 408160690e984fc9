"""The stream consumer's side of resync: a ``webchat.resync`` makes a socket re-read from its
cursor once, so what was written while the backplane was away arrives without waiting for
the next activity, once and in order; the stream metrics count what it sends."""

import asyncio
import threading
from unittest import mock

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import TestCase

from notifier.events import group_name
from notifier.layers import LocalChannelLayer
from notifier.resync import RECONNECT, Resyncer
from tests.support.streams import (
    RecordingStreamConsumer,
    bulk_activities,
    bump,
    communicator,
    make_conversation,
    receive_set,
    stream_path,
    token_for,
)
from webchat import consumers
from webchat.catch_up import catch_up
from webchat.metrics import stream_stats
from webchat.pages import stream_page


class ConsumerResyncTests(TestCase):
    def setUp(self):
        RecordingStreamConsumer.instances.clear()
        self.conversation = make_conversation()
        bulk_activities(self.conversation, 3)
        self.group = group_name(str(self.conversation.tenant_id), self.conversation.id)

    async def open(self, watermark):
        comm = communicator(stream_path(self.conversation.id, token_for(self.conversation),
                                        watermark))
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        return comm, RecordingStreamConsumer.instances[-1]

    async def resync(self):
        await get_channel_layer().group_send(self.group,
                                             {"type": "webchat.resync", "reason": RECONNECT})

    async def test_a_resync_sends_what_no_notification_announced(self):
        comm, consumer = await self.open(3)
        self.assertTrue(await comm.receive_nothing(0.1))
        # Written while the backplane was away: no notification reached this replica.
        await sync_to_async(bulk_activities)(self.conversation, 2)
        self.assertTrue(await comm.receive_nothing(0.1))
        await self.resync()
        activities, watermark = await receive_set(self, comm)
        self.assertEqual(([a["n"] for a in activities], watermark), ([4, 5], 5))
        # The late notifications that may still come send nothing twice.
        await bump(self.conversation, 4)
        await bump(self.conversation, 5)
        self.assertTrue(await comm.receive_nothing(0.2))
        await comm.disconnect()

    async def test_a_resync_with_nothing_new_costs_no_read_and_sends_nothing(self):
        comm, consumer = await self.open(3)
        await asyncio.wait_for(consumer._reader, 5)
        reads, sweeps = consumer.reads, catch_up.counters["sweeps"]
        await self.resync()
        async with asyncio.timeout(5):  # the batched watermark check ran after the resync
            while catch_up.counters["sweeps"] == sweeps:
                await asyncio.sleep(0.01)
        self.assertTrue(await comm.receive_nothing(0.2))
        self.assertEqual(consumer.reads, reads)
        # Later bumps still get through.
        await sync_to_async(bulk_activities)(self.conversation, 1)
        await bump(self.conversation, 4)
        self.assertEqual((await receive_set(self, comm))[1], 4)
        await comm.disconnect()

    async def test_resyncs_during_a_read_coalesce_into_one_more_read(self):
        comm, consumer = await self.open(3)
        await asyncio.wait_for(consumer._reader, 5)
        reads = consumer.reads
        await sync_to_async(bulk_activities)(self.conversation, 4)
        # Hold the first read until the other 19 resyncs were handled (reads take ~50 µs:
        # left alone, most resyncs would come after it ended and rightly read again).
        entered, release = threading.Event(), threading.Event()

        def held_read(*args):
            entered.set()
            release.wait(5)
            return stream_page(*args)

        handled = stream_stats.resyncs
        with mock.patch.object(consumers, "stream_page", held_read):
            await self.resync()
            self.assertTrue(await asyncio.to_thread(entered.wait, 5))
            for _ in range(19):
                await self.resync()
            async with asyncio.timeout(5):  # every resync reached the consumer
                while stream_stats.resyncs < handled + 20:
                    await asyncio.sleep(0.005)
            release.set()
            activities, watermark = await receive_set(self, comm)
            await asyncio.wait_for(consumer._reader, 5)
        self.assertEqual(([a["n"] for a in activities], watermark), ([4, 5, 6, 7], 7))
        self.assertLessEqual(consumer.reads - reads, 2)
        self.assertTrue(await comm.receive_nothing(0.1))
        await comm.disconnect()

    async def test_a_resync_pass_over_the_process_layer_reaches_every_socket(self):
        other = await sync_to_async(make_conversation)("other-tenant")
        await sync_to_async(bulk_activities)(other, 1)
        comm, _ = await self.open(3)
        other_comm = communicator(stream_path(other.id, token_for(other), 1))
        self.assertTrue((await other_comm.connect())[0])
        await sync_to_async(bulk_activities)(self.conversation, 1)
        await sync_to_async(bulk_activities)(other, 1)
        layer = get_channel_layer()
        self.assertIsInstance(layer, LocalChannelLayer)
        await Resyncer(layer).request(RECONNECT)
        self.assertEqual((await receive_set(self, comm))[1], 4)
        self.assertEqual((await receive_set(self, other_comm))[1], 2)
        await comm.disconnect()
        await other_comm.disconnect()

    async def test_stream_metrics_count_frames_activities_replays_and_resyncs(self):
        before = (stream_stats.frames, stream_stats.activities, stream_stats.resyncs,
                  stream_stats.replays.count)
        comm, consumer = await self.open(1)  # replays 2 and 3
        await receive_set(self, comm)
        await sync_to_async(bulk_activities)(self.conversation, 1)
        await self.resync()
        await receive_set(self, comm)
        after = (stream_stats.frames, stream_stats.activities, stream_stats.resyncs,
                 stream_stats.replays.count)
        self.assertEqual([b - a for a, b in zip(before, after, strict=True)], [2, 3, 1, 1])
        await comm.disconnect()
