"""A replica killed between commit and PUBLISH, with two real daphne replicas: the other
replica's sockets catch up through its periodic watermark sweep (``webchat.catch_up``),
exactly once and in order, within one ``CATCH_UP_INTERVAL`` and a read.

The dead replica is a ``manage.py shell`` process on the cluster's database that stores
activities through the app's own write path (``append_activity``: the row and the watermark
in one transaction) with a notifier that publishes to no one, then SIGKILLs itself: the
database is left exactly as by a replica killed right after its commit, and no bump of those
activities ever reaches Redis.
"""

import asyncio
import logging
from unittest import SkipTest

from django.test import SimpleTestCase

from tests import test_two_replicas
from tests.support.chaos import commit_then_die
from tests.support.replicas import redis_unavailable, start_cluster

logger = logging.getLogger(__name__)

#: The default ``CATCH_UP_INTERVAL`` (s) and the bound this test holds every socket to:
#: one interval, the sweep, the read, on a shared 2-core machine.
INTERVAL = 1.5
BOUND = INTERVAL + 0.5
CONVERSATIONS = 5  # one user: MAX_SOCKETS_PER_USER (10) on a replica
SOCKETS_EACH = 2
WRITTEN = 3

# Conversations are written one after the other, SPACING seconds apart, so that their
# commits fall at different points of replica B's sweep cycle (the lag depends on it).
SPACING = 0.37


class KilledReplicaMixin:
    """Two replicas, and a replica that commits and dies before it publishes."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = redis_unavailable()
        if reason:
            raise SkipTest(reason)
        cls.cluster = start_cluster(cls, replicas=2, extra_env=cls.extra_env)
        cls.secret = cls.cluster.create_tenant()

    extra_env = {}

    # The REST helpers of the two-replica tests (not their tests).
    _two = test_two_replicas.TwoReplicaMixin
    call, start_conversation, resume = _two.call, _two.start_conversation, _two.resume
    assert_stream_url_on, stream = _two.assert_stream_url_on, _two.stream

    def kill_after_commit(self, conversation_ids):
        """Run the killed replica; return the monotonic time of each conversation's last
        commit."""
        return commit_then_die(self.cluster, conversation_ids, WRITTEN, SPACING)


class KilledBetweenCommitAndPublishTests(KilledReplicaMixin, SimpleTestCase):
    async def test_sockets_on_b_catch_up_within_the_bound_exactly_once_in_order(self):
        conversations = [await self.start_conversation(1) for _ in range(CONVERSATIONS)]
        clients = {}
        for conversation in conversations:
            cid = conversation["conversationId"]
            clients[cid] = [await self.stream(1, conversation) for _ in range(SOCKETS_EACH)]
        await asyncio.sleep(0.3)  # every socket joined and read its (empty) replay
        committed = await asyncio.to_thread(self.kill_after_commit, list(clients))

        lags = []
        for cid, sockets in clients.items():
            for client in sockets:
                await client.until_watermark(WRITTEN, timeout=BOUND + 5)
                lags.append(client.arrived[f"{cid}|{WRITTEN:07d}"] - committed[cid])
        for cid, sockets in clients.items():
            for client in sockets:
                await client.assert_nothing_more(0.05)
                client.assert_exactly(cid, 1, WRITTEN)
                await client.close()
        logger.info("caught up after a kill between commit and PUBLISH: %d sockets, lag "
                    "%.2f-%.2f s (bound %.1f s)", len(lags), min(lags), max(lags), BOUND)
        self.assertLess(max(lags), BOUND, lags)


class WithoutTheSweepTests(KilledReplicaMixin, SimpleTestCase):
    """The control: with the sweep pushed an hour away, nothing tells replica B's sockets of
    what the killed replica committed (the gap the sweep closes is real)."""

    extra_env = {"WEBCHAT_STREAM_CATCH_UP_INTERVAL": "3600"}

    async def test_nothing_tells_the_sockets_on_b(self):
        conversation = await self.start_conversation(1)
        client = await self.stream(1, conversation)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(self.kill_after_commit, [conversation["conversationId"]])
        await client.assert_nothing_more(BOUND + 1)
        self.assertEqual(client.ids(), [])
        await client.close()
