"""The stream's catch-up without notifications (``webchat.catch_up``): a periodic watermark
sweep finds what no notification announced (a replica killed between commit and PUBLISH),
and a resync pass over every group costs one batched watermark query, with reads only for
the conversations that moved. (Two real replicas: ``tests.test_catch_up_replicas``.)"""

import asyncio
from unittest import mock

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext

from notifier.resync import RECONNECT, Resyncer
from tests.support.streams import (
    RecordingStreamConsumer,
    bulk_activities,
    communicator,
    make_conversation,
    receive_set,
    stream_path,
    token_for,
)
from webchat import catch_up as catch_up_module
from webchat import queries
from webchat.catch_up import CHUNK, catch_up, watermarks
from webchat.metrics import render

SOCKETS = 40
MOVED = 5


class Queries:
    """The statements the catch-up's watermark reads run while inside ``with``."""

    def __init__(self):
        self.sql = []
        self._patch = mock.patch.object(catch_up_module, "watermarks", self._watermarks)

    def _watermarks(self, ids):
        with CaptureQueriesContext(connection) as captured:
            found = watermarks(ids)
        self.sql += [query["sql"] for query in captured.captured_queries]
        return found

    def __enter__(self):
        self._patch.start()
        return self

    def __exit__(self, *exc):
        self._patch.stop()


class CatchUpTests(TestCase):
    def setUp(self):
        RecordingStreamConsumer.instances.clear()

    async def open(self, conversation, watermark):
        comm = communicator(stream_path(conversation.id, token_for(conversation), watermark))
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        return comm, RecordingStreamConsumer.instances[-1]

    @override_settings(WEBCHAT_STREAM={"CATCH_UP_INTERVAL": 0.2})
    async def test_the_sweep_sends_what_no_notification_announced_once_in_order(self):
        conversation = await sync_to_async(make_conversation)()
        await sync_to_async(bulk_activities)(conversation, 2)
        comm, consumer = await self.open(conversation, 2)
        await asyncio.wait_for(consumer._reader, 5)
        # Committed by a replica that died before its PUBLISH: nobody announces these.
        await sync_to_async(bulk_activities)(conversation, 3)
        loop = asyncio.get_running_loop()
        written = loop.time()
        activities, watermark = await receive_set(self, comm, timeout=5)
        self.assertLess(loop.time() - written, 0.2 + 1.0)  # one interval and a read
        self.assertEqual(([a["n"] for a in activities], watermark), ([3, 4, 5], 5))
        # Later sweeps find nothing behind: nothing is sent twice, nothing is read again.
        reads = consumer.reads
        sweeps = catch_up.counters["sweeps"]
        async with asyncio.timeout(5):
            while catch_up.counters["sweeps"] < sweeps + 2:
                await asyncio.sleep(0.05)
        self.assertTrue(await comm.receive_nothing(0.1))
        self.assertEqual(consumer.reads, reads)
        # The sweeps and what they found are metrics.
        exposed = dict(line.rsplit(" ", 1) for line in render().decode().splitlines()
                       if line.startswith("webchat_stream_catch_up_"))
        counters = catch_up.counters.snapshot()
        self.assertGreaterEqual(float(exposed["webchat_stream_catch_up_sweeps_total"]),
                                sweeps + 2)
        self.assertEqual(float(exposed["webchat_stream_catch_up_woken_total"]),
                         counters["woken"])
        self.assertGreaterEqual(counters["woken"], 1)
        await comm.disconnect()

    async def test_a_resync_pass_costs_one_watermark_query_and_reads_only_what_moved(self):
        conversations = []
        for index in range(SOCKETS):
            conversation = await sync_to_async(make_conversation)(f"tenant-{index % 4}")
            await sync_to_async(bulk_activities)(conversation, 1)
            conversations.append(conversation)
        opened = [await self.open(conversation, 1) for conversation in conversations]
        for _, consumer in opened:
            await asyncio.wait_for(consumer._reader, 5)
        for conversation in conversations[:MOVED]:
            await sync_to_async(bulk_activities)(conversation, 2)
        reads = sum(consumer.reads for _, consumer in opened)
        sweeps = catch_up.counters["sweeps"]
        with Queries() as captured:
            # Spread over 0.4 s: the messages of one pass arrive over that time.
            await Resyncer(get_channel_layer(), rate=100).request(RECONNECT)
            for comm, _ in opened[:MOVED]:
                activities, watermark = await receive_set(self, comm, timeout=5)
                self.assertEqual(([a["n"] for a in activities], watermark), ([2, 3], 3))
            await asyncio.sleep(0.5)
        self.assertEqual(catch_up.counters["sweeps"], sweeps + 1)
        self.assertEqual(len(captured.sql), 1)
        self.assertEqual(sum(consumer.reads for _, consumer in opened) - reads, MOVED)
        for comm, _ in opened:
            self.assertTrue(await comm.receive_nothing(0.01))
            await comm.disconnect()

    async def test_one_query_for_any_number_of_conversations_and_the_last_socket_stops_it(
        self,
    ):
        conversation = await sync_to_async(make_conversation)()
        comm, _ = await self.open(conversation, 0)
        task = catch_up._task
        self.assertFalse(task.done())
        # More conversations than a statement takes parameters: ids that do not exist (or
        # whose tenant is not the socket's) cost nothing.
        ghosts = [Ghost("t", f"g{i}") for i in range(CHUNK)] + [Ghost("t", conversation.id)]
        for ghost in ghosts:
            catch_up.add(ghost)
        with Queries() as captured:
            self.assertEqual(await catch_up.sweep(), 0)
        self.assertEqual(len(captured.sql), 1)
        # Where the list cannot be one parameter: one statement per CHUNK ids.
        with Queries() as captured, mock.patch.object(queries, "_has_json_each",
                                                      return_value=False):
            self.assertEqual(await catch_up.sweep(), 0)
        self.assertEqual(len(captured.sql), 2)
        for ghost in ghosts:
            self.assertIsNone(catch_up.discard(ghost))
        await comm.disconnect()
        self.assertTrue(task.done())
        self.assertIsNone(catch_up._task)


class Ghost:
    """A registered socket that always says it is behind."""

    def __init__(self, tenant_id, conversation_id):
        self.tenant_id, self.conversation_id = tenant_id, conversation_id

    def behind(self, watermark):
        return True
