"""Redis Sentinel with real processes: a master, a replica and three sentinels on free loopback
ports (tests/support/sentinel.py). A listener and a publisher on ``redis+sentinel://`` follow
``SENTINEL FAILOVER`` and then a SIGKILL of the promoted master.

The bounds are measured here (see README "Redis Sentinel"): FOLLOW_FAILOVER from the
FAILOVER command, FOLLOW_KILL from the SIGKILL, each until a notification published after it
is delivered.
"""

import asyncio
import shutil
import time
import unittest

from django.test import SimpleTestCase

from notifier.backends.redis import RedisNotifier
from notifier.events import NotifyEvent, group_name
from notifier.exceptions import BackplaneUnavailable
from notifier.layers import LocalChannelLayer
from notifier.resync import MESSAGE_TYPE as RESYNC
from notifier.sentinel import CHECK_TIMEOUT, SentinelTransport, _AsyncMasterConnection
from tests.support.redis_server import unique_channel
from tests.support.sentinel import SentinelDeployment

#: Seconds from SENTINEL FAILOVER until the listener resubscribed at the new master and a
#: notification published after that arrived (so the publisher moved too).
FOLLOW_FAILOVER = 5.0
#: Seconds from a SIGKILL of the master until one published after it arrives: the sentinels
#: need down-after-milliseconds (1 s) and an election before there is a master again.
FOLLOW_KILL = 8.0

requires_sentinel = unittest.skipUnless(shutil.which("redis-server"),
                                        "redis-server is not installed")


class Flow:
    """Publishes watermarks 1, 2, ... through ``publisher`` every ``period`` s, and records
    when each arrives at a member of ``layer``'s group (and every resync it gets)."""

    def __init__(self, publisher, layer, period=0.05):
        self.publisher = publisher
        self.layer = layer
        self.period = period
        self.event = NotifyEvent("t", "c", 0)
        self.published = {}  # watermark -> monotonic time of apublish
        self.received = {}  # watermark -> monotonic time of arrival
        self.duplicates = 0
        self.resyncs = []
        self._tasks = []

    async def start(self):
        self.member = await self.layer.new_channel()
        await self.layer.group_add(group_name("t", "c"), self.member)
        self._tasks = [asyncio.create_task(self._publish()), asyncio.create_task(self._receive())]

    async def stop(self):
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _publish(self):
        watermark = 0
        while True:
            watermark += 1
            self.published[watermark] = time.monotonic()
            await self.publisher.apublish(NotifyEvent("t", "c", watermark))
            await asyncio.sleep(self.period)

    async def _receive(self):
        while True:
            message = await self.layer.receive(self.member)
            if message["type"] == RESYNC:
                self.resyncs.append(time.monotonic())
                continue
            watermark = message["watermark"]
            if watermark in self.received:
                self.duplicates += 1
            self.received.setdefault(watermark, time.monotonic())

    async def delivered_after(self, since, timeout):
        """Wait until a watermark published after ``since`` arrives; return its arrival time
        minus ``since``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            arrived = [self.received[w] for w, at in list(self.published.items())
                       if at > since and w in self.received]
            if arrived:
                return min(arrived) - since
            await asyncio.sleep(0.02)
        raise AssertionError(f"nothing published after the event arrived within {timeout} s")

    def in_order(self):
        order = sorted(self.received, key=self.received.get)
        return order == sorted(order)


async def resubscribed(listener, connects, since, timeout):
    """Wait until ``listener`` subscribed again (more than ``connects``); return the time
    since ``since``."""
    deadline = time.monotonic() + timeout
    while listener.counters["connects"] <= connects or not listener.connected:
        if time.monotonic() > deadline:
            raise AssertionError(f"the listener did not resubscribe within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - since


@requires_sentinel
class SentinelTransportTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.deployment = SentinelDeployment()
        cls.addClassCleanup(cls.deployment.cleanup)
        cls.deployment.start()

    async def test_clients_talk_to_the_master_the_sentinels_name(self):
        transport = SentinelTransport(self.deployment.url)
        client = transport.client("test")
        try:
            self.assertTrue(await client.ping())
            role = await client.execute_command("ROLE")
            self.assertEqual(role[0], b"master")
            connection = await client.connection_pool.get_connection()
            self.assertEqual(connection.port, self.deployment.master_port())
            await client.connection_pool.release(connection)
        finally:
            await client.aclose()
        sync_client = transport.client(asynchronous=False)
        try:
            self.assertEqual(sync_client.execute_command("ROLE")[0], b"master")
        finally:
            sync_client.close()

    async def test_a_connection_to_a_replica_is_refused(self):
        # What happens when the sentinels still name a master that was demoted.
        client = SentinelTransport(self.deployment.url).client()
        try:
            replica = self.deployment.replica.port
            connection = _AsyncMasterConnection(connection_pool=client.connection_pool,
                                                host="127.0.0.1", port=replica)
            with self.assertRaisesRegex(Exception, rf"127.0.0.1:{replica} is a slave, not the"):
                await connection.connect_to(("127.0.0.1", replica))
            self.assertFalse(connection.is_connected)
        finally:
            await client.aclose()

    async def test_frozen_sentinels_hold_up_no_message_for_long(self):
        # Sentinels that accept connections and never answer: the subscription's watch
        # runs beside its reads, a publisher's recheck gives up after CHECK_TIMEOUT.
        channel = unique_channel()
        layer = LocalChannelLayer()
        listening = RedisNotifier(self.deployment.url, channel=channel, channel_layer=layer)
        publishing = RedisNotifier(self.deployment.url, channel=channel,
                                   channel_layer=LocalChannelLayer())
        await listening.astart()
        await publishing.astart()
        listener = listening.listener()
        listener.start()
        flow = Flow(publishing, layer)
        try:
            await listener.wait_connected(5)
            await flow.start()
            await flow.delivered_after(time.monotonic(), 5)
            frozen = time.monotonic()
            for sentinel in self.deployment.sentinels:
                sentinel.pause()
            try:
                await asyncio.sleep(3.5)
            finally:
                for sentinel in self.deployment.sentinels:
                    sentinel.resume()
            during = [w for w, at in flow.published.items() if frozen < at < frozen + 3.0]
            await asyncio.sleep(0.5)
            self.assertEqual([w for w in during if w not in flow.received], [])
            delays = [flow.received[w] - flow.published[w] for w in during]
            print(f"\nsentinels frozen 3.5 s: {len(during)} notifications, delay at most "
                  f"{max(delays):.2f} s (CHECK_TIMEOUT {CHECK_TIMEOUT} s)")
            self.assertLess(max(delays), CHECK_TIMEOUT + 0.5)
            self.assertEqual(listener.counters["connects"], 1)
        finally:
            await flow.stop()
            await listener.aclose()
            await listening.aclose()
            await publishing.aclose()

    async def test_an_unknown_service_fails_as_a_connection_error(self):
        url = self.deployment.url.replace(self.deployment.service, "no-such-service")
        notifier = RedisNotifier(url)
        with self.assertRaisesRegex(Exception, "No master found for 'no-such-service'"):
            await asyncio.to_thread(notifier.verify, 2.0)


@requires_sentinel
class SentinelFailoverTests(SimpleTestCase):
    async def test_listener_and_publisher_follow_a_failover_and_a_killed_master(self):
        deployment = await asyncio.to_thread(SentinelDeployment.start_for, self)
        channel = unique_channel()
        listening_layer = LocalChannelLayer()
        listening = RedisNotifier(deployment.url, channel=channel, channel_layer=listening_layer)
        publishing = RedisNotifier(deployment.url, channel=channel,
                                   channel_layer=LocalChannelLayer())
        await listening.astart()
        await publishing.astart()
        listener = listening.listener()
        listener.start()
        flow = Flow(publishing, listening_layer)
        try:
            await listener.wait_connected(5)
            await flow.start()
            await flow.delivered_after(time.monotonic(), 5)

            # 1. SENTINEL FAILOVER: the old master keeps answering, as a replica.
            connects = listener.counters["connects"]
            started = time.monotonic()
            old = await asyncio.to_thread(deployment.failover)
            new = await asyncio.to_thread(deployment.wait_master, old)
            switched = time.monotonic() - started
            moved = await resubscribed(listener, connects, started, FOLLOW_FAILOVER)
            # Published after the listener moved: arrives only if the publisher moved too.
            followed = moved + await flow.delivered_after(started + moved, FOLLOW_FAILOVER)
            print(f"\nsentinel failover: sentinels switched in {switched:.2f} s; the listener "
                  f"resubscribed {moved:.2f} s and deliveries resumed {followed:.2f} s after "
                  "SENTINEL FAILOVER")
            self.assertLess(followed, FOLLOW_FAILOVER)
            await asyncio.to_thread(deployment.wait_replica_synced, old)

            # 2. SIGKILL the promoted master: the sentinels promote the old one again.
            resyncs_before = len(flow.resyncs)
            connects = listener.counters["connects"]
            killed = time.monotonic()
            await asyncio.to_thread(deployment.kill_master)
            again = await asyncio.to_thread(deployment.wait_master, new)
            promoted = time.monotonic() - killed
            moved = await resubscribed(listener, connects, killed, FOLLOW_KILL)
            followed_kill = moved + await flow.delivered_after(killed + moved, FOLLOW_KILL)
            print(f"sentinel kill: promoted after {promoted:.2f} s; the listener resubscribed "
                  f"{moved:.2f} s and deliveries resumed {followed_kill:.2f} s after the SIGKILL")
            self.assertEqual(again, old)
            self.assertLess(followed_kill, FOLLOW_KILL)

            # Steady again: what is published now arrives, once and in order.
            mark = time.monotonic()
            await asyncio.sleep(1.0)
            await flow.delivered_after(mark, 5)
            late = [w for w, at in flow.published.items() if mark < at < mark + 0.8]
            await asyncio.sleep(1.0)
            self.assertTrue(late)
            self.assertEqual([w for w in late if w not in flow.received], [])
            self.assertEqual(flow.duplicates, 0)
            self.assertTrue(flow.in_order())
            # Every resubscription asked the local consumers to re-read: that closes the gap.
            self.assertGreater(len(flow.resyncs), resyncs_before)
            # Honest readiness afterwards: the probe's round trips go through the new master.
            returned = listener.probe.counters["returned"]
            await asyncio.sleep(1.5)
            self.assertGreater(listener.probe.counters["returned"], returned)
        finally:
            await flow.stop()
            await listener.aclose()
            await listening.aclose()
            await publishing.aclose()


@requires_sentinel
class SentinelAuthTests(SimpleTestCase):
    """Sentinels with ``requirepass`` and a master with another password: the URL's user
    part goes to the master, ``sentinel_password`` to the sentinels."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.deployment = SentinelDeployment(password="master-secret-1",
                                            sentinel_password="sentinel-secret-2")
        cls.addClassCleanup(cls.deployment.cleanup)
        cls.deployment.start()

    async def test_a_listener_and_a_publisher_with_both_passwords(self):
        url = self.deployment.url
        self.assertIn("sentinel_password=sentinel-secret-2", url)
        channel = unique_channel()
        layer = LocalChannelLayer()
        listening = RedisNotifier(url, channel=channel, channel_layer=layer)
        publishing = RedisNotifier(url, channel=channel, channel_layer=LocalChannelLayer())
        await asyncio.to_thread(listening.verify, 2.0)
        await listening.astart()
        await publishing.astart()
        listener = listening.listener()
        listener.start()
        flow = Flow(publishing, layer)
        try:
            await listener.wait_connected(5)
            await flow.start()
            await flow.delivered_after(time.monotonic(), 5)
        finally:
            await flow.stop()
            await listener.aclose()
            await listening.aclose()
            await publishing.aclose()

    async def test_a_wrong_password_is_refused_and_masked(self):
        right = self.deployment.url
        cases = {
            "sentinel": right.replace("sentinel-secret-2", "wrong-secret-3"),
            "master": right.replace("master-secret-1", "wrong-secret-3"),
        }
        for which, url in cases.items():
            with self.subTest(which), self.assertRaises(BackplaneUnavailable) as caught:
                await asyncio.to_thread(RedisNotifier(url).verify, 2.0)
            message = str(caught.exception)
            self.assertNotIn("secret", message.replace("sentinel_password", ""))
            self.assertIn("***", message)
