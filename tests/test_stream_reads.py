"""SharedReads: stream reads batched into one thread hop, one query per distinct read."""

import asyncio
import threading
from unittest import mock

from asgiref.sync import sync_to_async
from django.test import SimpleTestCase, TestCase

from tests.support.streams import (
    TIMEOUT,
    append,
    bump,
    communicator,
    make_conversation,
    parse_activity_set,
    stream_path,
    token_for,
)
from webchat import pages as webchat_pages
from webchat.pages import Page
from webchat.stream_reads import SharedReads


class Recorder:
    """A read function that records its calls (and can be held in the database thread)."""

    def __init__(self, fail_on=None):
        self.calls = []
        self.threads = set()
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, conversation, cursor):
        self.calls.append((conversation, cursor))
        self.threads.add(threading.get_ident())
        self.entered.set()
        self.gate.wait(10)
        if conversation == self.fail_on:
            raise RuntimeError("db down")
        return Page([{"id": f"{conversation}|{cursor + 1}"}], [], cursor + 1)


class SharedReadsTests(SimpleTestCase):
    async def test_same_read_asked_together_runs_once_and_is_shared(self):
        reads, function = SharedReads(), Recorder()
        pages = await asyncio.gather(*(reads.read(function, "c1", 4) for _ in range(5)))
        self.assertEqual(function.calls, [("c1", 4)])
        self.assertTrue(all(page is pages[0] for page in pages))
        self.assertEqual(pages[0], Page([{"id": "c1|5"}], [], 5))

    async def test_different_reads_asked_together_share_one_hop(self):
        reads, function = SharedReads(), Recorder()
        first, second, third = await asyncio.gather(
            reads.read(function, "c1", 0), reads.read(function, "c2", 7),
            reads.read(function, "c1", 3),
        )  # fmt: skip
        self.assertEqual(sorted(function.calls), [("c1", 0), ("c1", 3), ("c2", 7)])
        self.assertEqual(len(function.threads), 1)
        self.assertEqual((first.newest, second.newest, third.newest), (1, 8, 4))

    async def test_a_failing_read_fails_only_its_waiters(self):
        reads, function = SharedReads(), Recorder(fail_on="bad")
        good, bad = await asyncio.gather(
            reads.read(function, "good", 1), reads.read(function, "bad", 1),
            return_exceptions=True,
        )  # fmt: skip
        self.assertEqual(good.newest, 2)
        self.assertIsInstance(bad, RuntimeError)

    async def test_a_read_asked_during_a_batch_never_joins_it(self):
        # Asked after the batch started, it must see rows committed meanwhile: its own query.
        reads, function = SharedReads(), Recorder()
        function.gate.clear()
        first = asyncio.create_task(reads.read(function, "c1", 0))
        await asyncio.to_thread(function.entered.wait, 10)
        second = asyncio.create_task(reads.read(function, "c1", 0))
        await asyncio.sleep(0.05)
        function.gate.set()
        await asyncio.gather(first, second)
        self.assertEqual(function.calls, [("c1", 0), ("c1", 0)])

    async def test_a_cancelled_reader_does_not_cancel_the_others(self):
        reads, function = SharedReads(), Recorder()
        function.gate.clear()
        leaving = asyncio.create_task(reads.read(function, "c1", 0))
        staying = asyncio.create_task(reads.read(function, "c1", 0))
        await asyncio.to_thread(function.entered.wait, 10)
        leaving.cancel()
        function.gate.set()
        self.assertEqual((await staying).newest, 1)
        with self.assertRaises(asyncio.CancelledError):
            await leaving


class SharedStreamReadsTests(TestCase):
    """Sockets of one conversation on one replica: one query per bump, the same frame."""

    async def test_sockets_of_a_conversation_share_the_read_of_a_bump(self):
        conversation = await sync_to_async(make_conversation)()
        token = await sync_to_async(token_for)(conversation)
        sockets = []
        for _ in range(3):
            comm = communicator(stream_path(conversation.id, token))
            connected, _ = await comm.connect()
            self.assertTrue(connected)
            sockets.append(comm)
        await asyncio.sleep(0.1)  # the first (empty) reads are done
        with mock.patch("webchat.consumers.stream_page", wraps=webchat_pages.stream_page) as spy:
            await append(conversation, "hello")
            await bump(conversation, 1)  # what the notifier sends once the write commits
            frames = [await comm.receive_from(TIMEOUT) for comm in sockets]
        self.assertEqual(spy.call_count, 1)
        self.assertEqual(len(set(frames)), 1)
        activities, watermark = parse_activity_set(self, frames[0])
        self.assertEqual(([a["text"] for a in activities], watermark), (["hello"], 1))
        for comm in sockets:
            self.assertTrue(await comm.receive_nothing(0.1))
            await comm.disconnect()
