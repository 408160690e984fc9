"""A forged flood of huge messages on the global channel, against two real daphne replicas on
a private ``redis-server``.

No signature is needed to hurt: Redis drops every subscriber whose output buffer outgrows
``client-output-buffer-limit pubsub`` (32 MiB hard by default), so each message closes every
replica's subscriber connection. The reported flood sent 34 MiB messages; here the limit is
scaled down to 4 MiB and the messages to 5 MiB (the same mechanism: each one is over the
limit), so that a shared 2-core machine can keep the flood up. That is trouble every replica
shares: ``/readyz`` must never answer 503 (it says ``degraded`` once it lasts), local
delivery goes on, the catch-up sweep still brings what the other replica wrote, and
everything is in order once the flood stops.
"""

import asyncio
import logging
import threading
import time

from django.test import SimpleTestCase

from tests.support.redis_server import requires_redis_server
from tests.test_chaos import ChaosMixin, read_forever

logger = logging.getLogger(__name__)

TIMEOUT = 20  # generous: the machine is shared
#: Seconds the flood lasts: long enough for readiness to report it (UNREADY_AFTER, 5 s).
FLOOD = 9.0
#: Redis's pub/sub output buffer limit here, and the bytes of each forged message (over it).
PUBSUB_LIMIT = "pubsub 4mb 1mb 60"
MESSAGE = 5 * 1024 * 1024
#: Seconds between two /readyz samples of a replica, and between two posts.
SAMPLE_EVERY = 0.2
POST_EVERY = 0.5
#: Local delivery (the socket's own replica) must stay quick through the flood.
LOCAL_DELIVERY = 2.0


@requires_redis_server
class FloodTests(ChaosMixin, SimpleTestCase):
    def flood(self, stop, published):
        """PUBLISH ``MESSAGE``-byte payloads on the replicas' channel until ``stop`` is set."""
        client = self.redis.client(socket_timeout=30)
        payload = b"\x00" * MESSAGE
        try:
            while not stop.is_set():
                client.publish(self.cluster.channel, payload)
                published.append(time.monotonic())
                stop.wait(0.01)
        finally:
            client.close()

    async def test_a_flood_of_huge_messages_degrades_without_a_503_and_loses_nothing(self):
        conversation = await self.conversation(0)
        local = await self.stream(0, conversation)  # written on its own replica
        remote = await self.stream(1, conversation)  # only the backplane or the sweep
        readers = [asyncio.create_task(read_forever(client)) for client in (local, remote)]
        posted, posted_at = [], {}
        samples = {0: [], 1: []}
        before = [await self.metrics(r) for r in (0, 1)]
        stop, published = threading.Event(), []
        admin = self.redis.client()
        self.addCleanup(admin.close)
        await asyncio.to_thread(admin.config_set, "client-output-buffer-limit", PUBSUB_LIMIT)
        try:
            for replica in (0, 1):
                await self.wait_ready(replica, 200)
            flooder = asyncio.create_task(asyncio.to_thread(self.flood, stop, published))
            flood_started = time.monotonic()

            async def sample(replica):
                while not stop.is_set():
                    status, body = await self.ready(replica)
                    backplane = body.get("checks", {}).get("backplane", {})
                    # "pending": trouble not yet lasting UNREADY_AFTER (the replicas' test
                    # settings show every caller the details).
                    word = body.get("status")
                    if word == "ready" and "pending" in backplane:
                        word = "ready, pending"
                    samples[replica].append((status, word))
                    await asyncio.sleep(SAMPLE_EVERY)

            async def post():
                n = 0
                while not stop.is_set():
                    activity_id = await self.post(0, conversation, f"flood {n}")
                    posted.append(activity_id)
                    posted_at[activity_id] = time.monotonic()
                    n += 1
                    await asyncio.sleep(POST_EVERY)

            samplers = [asyncio.create_task(sample(r)) for r in (0, 1)]
            poster = asyncio.create_task(post())
            await asyncio.sleep(FLOOD)
            stop.set()
            await asyncio.gather(flooder, poster, *samplers)
            flood_ended = time.monotonic()

            # Local delivery went on through the flood.
            await local.until(lambda c: posted[-1] in c.arrived, TIMEOUT)
            local_lag = max(local.arrived[i] - posted_at[i] for i in posted)
            # After the flood, the other replica has everything, once and in order.
            await remote.until(lambda c: posted[-1] in c.arrived, TIMEOUT)
            caught_up = remote.arrived[posted[-1]] - flood_ended
            for client in (local, remote):
                self.assertEqual(client.ids(), posted)
            bodies = [await self.wait_ready(r, 200) for r in (0, 1)]
            for replica in (0, 1):
                deadline = time.monotonic() + TIMEOUT
                while (await self.ready(replica))[1]["status"] != "ready":
                    self.assertLess(time.monotonic(), deadline, bodies)
                    await asyncio.sleep(0.2)
            after = [await self.metrics(r) for r in (0, 1)]
        finally:
            stop.set()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await self.close_clients()

        counts = {r: {} for r in samples}
        for replica, seen in samples.items():
            for status, word in seen:
                counts[replica][(status, word)] = counts[replica].get((status, word), 0) + 1
        disconnects = [after[r][("webchat_backplane_disconnects_total", frozenset())]
                       - before[r][("webchat_backplane_disconnects_total", frozenset())]
                       for r in (0, 1)]
        logger.info(
            "measured: %d messages of %d MiB over %.1f s; /readyz samples %s; subscriber "
            "connections dropped %s; local delivery within %.2f s; the other replica had "
            "the last post %.2f s after the flood stopped", len(published), MESSAGE >> 20,
            flood_ended - flood_started, counts, disconnects, local_lag, caught_up)
        self.assertGreater(len(published), 5)
        self.assertTrue(all(d > 0 for d in disconnects), disconnects)  # the flood was felt
        for seen in samples.values():
            self.assertGreater(len(seen), 10)  # fewer on a loaded machine
            self.assertNotIn(503, [status for status, _ in seen], counts)
        self.assertLess(local_lag, LOCAL_DELIVERY)
        self.assertGreater(len(posted), 5)
        # Samples caught the trouble (each one a 503 before hysteresis), none turned red.
        troubled = sum(n for replica in counts for (status, word), n in counts[replica].items()
                       if word != "ready")
        self.assertGreater(troubled, 0, counts)
