"""Issue 12's "Done when" for Sentinel: two real daphne replicas on ``redis+sentinel://``
(a private master, replica and three sentinels: tests/support/sentinel.py), sockets on both,
activities posted through both while ``SENTINEL FAILOVER`` and then a SIGKILL of the promoted
master happen. Every socket gets every activity exactly once, in order, within CAUGHT_UP of
the last post, and both replicas answer /readyz 200 afterwards.
"""

import asyncio
import logging
import time
import urllib.error
import urllib.request
from unittest import SkipTest

from django.test import SimpleTestCase

from tests import test_two_replicas
from tests.support.replicas import start_cluster
from tests.support.sentinel import SentinelDeployment
from tests.test_sentinel_failover import requires_sentinel

logger = logging.getLogger(__name__)

#: The issue's bound: seconds from the last post until every socket has everything.
CAUGHT_UP = 5.0
#: Seconds between posts (alternating replicas) while the failovers happen.
PERIOD = 0.1
SOCKETS_EACH = 2


@requires_sentinel
class SentinelReplicasTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.deployment = SentinelDeployment()
        cls.addClassCleanup(cls.deployment.cleanup)
        try:
            cls.deployment.start()
        except RuntimeError as exc:
            raise SkipTest(f"no Sentinel deployment: {exc}") from None
        cls.cluster = start_cluster(cls, replicas=2, redis_url=cls.deployment.url)
        cls.secret = cls.cluster.create_tenant()

    _two = test_two_replicas.TwoReplicaMixin
    call, start_conversation, resume = _two.call, _two.start_conversation, _two.resume
    assert_stream_url_on, stream, post_bot = _two.assert_stream_url_on, _two.stream, _two.post_bot

    def readyz(self, index):
        url = self.cluster.replicas[index].http_url + "/readyz"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    async def test_every_socket_gets_everything_once_in_order_across_two_failovers(self):
        conversation = await self.start_conversation(0)
        cid = conversation["conversationId"]
        clients = [await self.stream(replica, conversation)
                   for replica in (0, 1) for _ in range(SOCKETS_EACH)]
        await asyncio.sleep(0.3)  # every socket joined and read its (empty) replay
        posted = []
        stop = asyncio.Event()

        async def post_through_both():
            n = 0
            while not stop.is_set():
                posted.append(await self.post_bot(n % 2, conversation, f"post {n}"))
                n += 1
                await asyncio.sleep(PERIOD)

        poster = asyncio.create_task(post_through_both())
        try:
            await asyncio.sleep(1.0)
            old = await asyncio.to_thread(self.deployment.failover)
            new = await asyncio.to_thread(self.deployment.wait_master, old)
            await asyncio.to_thread(self.deployment.wait_replica_synced, old)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(self.deployment.kill_master)
            await asyncio.to_thread(self.deployment.wait_master, new)
            await asyncio.sleep(2.0)
        finally:
            stop.set()
            await poster
        last_post = time.monotonic()

        total = len(posted)
        self.assertEqual(posted[-1], f"{cid}|{total:07d}")
        lags = []
        for client in clients:
            await client.until_watermark(total, timeout=CAUGHT_UP + 10)
            lags.append(client.arrived[f"{cid}|{total:07d}"] - last_post)
        for client in clients:
            await client.assert_nothing_more(0.2)
            client.assert_exactly(cid, 1, total)
            await client.close()
        logger.info("two replicas on Sentinel, failover then SIGKILL: %d activities, %d "
                    "sockets, caught up %.2f s after the last post at most", total,
                    len(clients), max(lags))
        self.assertLess(max(lags), CAUGHT_UP, lags)
        for index in (0, 1):
            status = await asyncio.to_thread(self.readyz, index)
            deadline = time.monotonic() + 10
            while status != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                status = await asyncio.to_thread(self.readyz, index)
            self.assertEqual(status, 200, f"replica {index}")
