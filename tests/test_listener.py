"""The backplane listener against real Redis: every wire vector, drops by reason, state and
counters, reconnects (CLIENT KILL, server restart, silent server), restart after a bug."""

import asyncio
import base64
import os
import signal
import time
import uuid

import redis.asyncio as aioredis
from django.test import SimpleTestCase
from redis.exceptions import ConnectionError as RedisConnectionError

from notifier import wire
from notifier.events import NotifyEvent
from notifier.listener import CLOSED, CONNECTED, IDLE, RECONNECTING, Listener, ListenerObserver
from tests.support.redis_server import (
    SHARED_URL,
    RedisServer,
    closed_port_url,
    requires_redis_server,
    requires_shared_redis,
    unique_channel,
)
from tests.support.wire_vectors import vectors

TIMEOUT = 5  # generous: the machine is shared
VECTORS = vectors()
SELF_ID = uuid.UUID(VECTORS["self_instance_id"])


class Recorder(ListenerObserver):
    """Remembers what the listener reported, in order."""

    def __init__(self):
        self.outcomes = []
        self.events = []
        self.disconnects = []
        self.connects = []

    def connected(self, listener, after_attempts):
        self.connects.append((time.monotonic(), after_attempts))

    def disconnected(self, listener, error, delay):
        self.disconnects.append((time.monotonic(), error, delay, listener.state,
                                 listener.attempt))

    def delivered(self, listener, message):
        self.outcomes.append("deliver")

    def dropped(self, listener, reason, payload, error=None):
        self.outcomes.append(f"drop:{reason}")


def make_listener(url, channel, *, instance_id=SELF_ID, deliver=None, **kwargs):
    events = []

    async def collect(event):
        events.append(event)

    recorder = Recorder()
    listener = Listener(url, channel=channel, instance_id=instance_id,
                        deliver=deliver or collect, observer=recorder, **kwargs)
    return listener, recorder, events


async def eventually(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def numsub(url, channel):
    client = aioredis.Redis.from_url(url)
    try:
        return dict(await client.pubsub_numsub(channel))[channel.encode()]
    finally:
        await client.aclose()


def payload(vector):
    return base64.b64decode(vector["payload_b64"])


class DispatchTests(SimpleTestCase):
    """The listener's dispatcher alone (no Redis), fed the batches its loop reads: every
    decode vector, in the reference's order."""

    async def test_every_decode_vector(self):
        listener, recorder, events = make_listener("redis://unused", "c")
        self.assertEqual(len(VECTORS["decode"]), 52)
        for vector in VECTORS["decode"]:
            with self.subTest(vector["name"]):
                delivered = len(events)
                await listener.dispatcher.dispatch([[b"message", b"c", payload(vector)]])
                self.assertEqual(recorder.outcomes[-1], vector["expect"])
                if vector["expect"] == "deliver":
                    self.assertEqual(events[delivered:], [NotifyEvent(**vector["event"])])
                else:
                    self.assertEqual(len(events), delivered)

    async def test_a_batch_is_routed_by_channel_and_other_replies_are_skipped(self):
        listener, recorder, events = make_listener("redis://unused", "c")
        event = NotifyEvent("t", "conv", 7)
        other = wire.encode(event, uuid.uuid4())
        await listener.dispatcher.dispatch([
            [b"subscribe", b"c", 1],
            [b"message", b"c", other],
            [b"message", b"c:resync", b"not json"],  # the control channel: not counted here
            [b"message", b"elsewhere", other],
            [b"pong", b""],
            [b"message", b"c", wire.encode(event, SELF_ID)],
        ])
        self.assertEqual(events, [event])
        self.assertEqual(recorder.outcomes, ["deliver", "drop:self_echo"])
        self.assertEqual((listener.counters["received"], listener.counters["delivered"]), (2, 1))


@requires_shared_redis
class SharedRedisListenerTests(SimpleTestCase):
    async def test_every_decode_vector_published_raw_is_delivered_or_dropped_and_counted(self):
        channel = unique_channel()
        listener, recorder, events = make_listener(SHARED_URL, channel)
        self.assertEqual(listener.state, IDLE)
        listener.start()
        client = aioredis.Redis.from_url(SHARED_URL)
        try:
            await listener.wait_connected(TIMEOUT)
            for vector in VECTORS["decode"]:
                await client.publish(channel, payload(vector))
            await eventually(lambda: len(recorder.outcomes) == len(VECTORS["decode"]))
            self.assertEqual(recorder.outcomes, [v["expect"] for v in VECTORS["decode"]])
            expected_events = [NotifyEvent(**v["event"]) for v in VECTORS["decode"]
                               if v["expect"] == "deliver"]
            self.assertEqual(events, expected_events)
            expected = {"delivered": len(expected_events)}
            for vector in VECTORS["decode"]:
                if vector["expect"] != "deliver":
                    reason = vector["expect"].split(":", 1)[1]
                    expected[reason] = expected.get(reason, 0) + 1
            stats = listener.stats()
            self.assertEqual({key: stats[key] for key in expected}, expected)
            self.assertEqual(
                (stats["state"], stats["attempt"], stats["connects"], stats["errors"]),
                (CONNECTED, 0, 1, 0),
            )
        finally:
            await client.aclose()
            await listener.aclose()

    async def test_aclose_cancels_awaits_and_unsubscribes(self):
        channel = unique_channel()
        listener, _, _ = make_listener(SHARED_URL, channel)
        task = listener.start()
        await listener.wait_connected(TIMEOUT)
        self.assertEqual(await numsub(SHARED_URL, channel), 1)
        with self.assertRaises(RuntimeError):
            listener.start()
        await listener.aclose()
        self.assertTrue(task.done())
        self.assertEqual(listener.state, CLOSED)
        await eventually(lambda: True)
        self.assertEqual(await numsub(SHARED_URL, channel), 0)

    async def test_an_unexpected_exception_is_logged_and_the_loop_restarts_after_500_ms(self):
        channel = unique_channel()
        calls = []

        async def deliver(event):
            calls.append((time.monotonic(), event))
            if len(calls) == 1:
                raise RuntimeError("bug in delivery")

        listener, recorder, _ = make_listener(SHARED_URL, channel, deliver=deliver,
                                              instance_id=uuid.uuid4())
        listener.start()
        client = aioredis.Redis.from_url(SHARED_URL)
        try:
            await listener.wait_connected(TIMEOUT)
            with self.assertLogs("notifier.listener", "ERROR") as logs:
                await client.publish(channel, wire.encode(NotifyEvent("t", "c", 1), SELF_ID))
                await eventually(lambda: listener.counters["errors"] == 1)
            failed_at = calls[0][0]
            self.assertIn("bug in delivery", "\n".join(logs.output))
            self.assertEqual(listener.state, RECONNECTING)
            await eventually(lambda: listener.counters["connects"] == 2)
            restarted_after = recorder.connects[-1][0] - failed_at
            self.assertGreaterEqual(restarted_after, 0.45)
            await client.publish(channel, wire.encode(NotifyEvent("t", "c", 2), SELF_ID))
            await eventually(lambda: len(calls) == 2)
            self.assertEqual(calls[1][1].new_watermark, 2)
            self.assertEqual(listener.counters["delivered"], 1)
        finally:
            await client.aclose()
            await listener.aclose()

    async def test_check_subscribes_once(self):
        channel = unique_channel()
        listener, _, _ = make_listener(SHARED_URL, channel)
        await listener.check()
        self.assertEqual(await numsub(SHARED_URL, channel), 0)
        self.assertEqual(listener.state, IDLE)

    async def test_keeps_the_connection_alive_with_pings(self):
        listener, _, _ = make_listener(SHARED_URL, unique_channel(), ping_interval=0.1)
        listener.start()
        try:
            await listener.wait_connected(TIMEOUT)
            await asyncio.sleep(0.6)
            self.assertEqual((listener.state, listener.counters["connects"]), (CONNECTED, 1))
        finally:
            await listener.aclose()


class RefusedConnectionTests(SimpleTestCase):
    async def test_backoff_schedule_while_redis_refuses(self):
        listener, recorder, _ = make_listener(closed_port_url(), unique_channel())
        listener.start()
        try:
            await eventually(lambda: len(recorder.disconnects) >= 3)
            delays = [d[2] for d in recorder.disconnects[:3]]
            for delay, nominal in zip(delays, (0.1, 0.25, 0.5), strict=True):
                self.assertGreaterEqual(delay, nominal * 0.8)
                self.assertLessEqual(delay, nominal * 1.2)
            self.assertEqual([d[3:] for d in recorder.disconnects[:3]],
                             [(RECONNECTING, 1), (RECONNECTING, 2), (RECONNECTING, 3)])
            self.assertEqual(listener.counters["connects"], 0)
        finally:
            await listener.aclose()

    async def test_check_fails_on_a_closed_port(self):
        listener, _, _ = make_listener(closed_port_url(), unique_channel())
        with self.assertRaises(RedisConnectionError):
            await listener.check()


@requires_redis_server
class PrivateRedisListenerTests(SimpleTestCase):
    async def deliver_one(self, server, channel, events, watermark):
        client = aioredis.Redis.from_url(server.url)
        try:
            await client.publish(channel, wire.encode(NotifyEvent("t", "c", watermark),
                                                      uuid.uuid4()))
        finally:
            await client.aclose()
        await eventually(lambda: events and events[-1].new_watermark == watermark)

    async def test_reconnects_within_a_second_after_client_kill(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        channel = unique_channel()
        listener, recorder, events = make_listener(server.url, channel)
        listener.start()
        try:
            await listener.wait_connected(TIMEOUT)
            await self.deliver_one(server, channel, events, 1)
            admin = aioredis.Redis.from_url(server.url)
            try:
                killed_at = time.monotonic()
                killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            finally:
                await admin.aclose()
            self.assertEqual(killed, 1)
            await eventually(lambda: listener.counters["connects"] == 2)
            reconnect = recorder.connects[-1][0] - killed_at
            self.assertLess(reconnect, 1.0)
            self.assertEqual(recorder.connects[-1][1], 1)  # after one failed session
            self.assertEqual((listener.state, listener.attempt), (CONNECTED, 0))
            self.assertEqual(listener.counters["disconnects"], 1)
            await self.deliver_one(server, channel, events, 2)
        finally:
            await listener.aclose()

    async def test_reconnects_after_the_server_is_stopped_and_restarted(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        channel = unique_channel()
        listener, recorder, events = make_listener(server.url, channel)
        listener.start()
        try:
            await listener.wait_connected(TIMEOUT)
            await asyncio.to_thread(server.stop)
            await eventually(lambda: listener.attempt >= 3)
            self.assertEqual(listener.state, RECONNECTING)
            self.assertFalse(listener.connected)
            await asyncio.to_thread(server.start)
            await listener.wait_connected(10)  # the backoff may be at 2 s by now
            self.assertEqual((listener.state, listener.attempt, listener.backoff.attempt),
                             (CONNECTED, 0, 0))
            await self.deliver_one(server, channel, events, 7)
            # After a success the next failure waits the shortest delay again.
            await asyncio.to_thread(server.stop)
            await eventually(lambda: recorder.disconnects[-1][4] == 1
                             and recorder.disconnects[-1][0] > recorder.connects[-1][0])
            self.assertLessEqual(recorder.disconnects[-1][2], 0.12)
        finally:
            await listener.aclose()

    async def test_a_silent_server_is_detected_by_ping_and_left(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        listener, recorder, events = make_listener(server.url, unique_channel(),
                                                   ping_interval=0.2, connect_timeout=0.5)
        listener.start()
        try:
            await listener.wait_connected(TIMEOUT)
            os.kill(server.pid, signal.SIGSTOP)  # alive but silent, like a lost network
            try:
                await eventually(lambda: listener.state == RECONNECTING)
                self.assertIsInstance(recorder.disconnects[0][1], TimeoutError)
            finally:
                os.kill(server.pid, signal.SIGCONT)
            await eventually(lambda: listener.counters["connects"] == 2, timeout=10)
        finally:
            await listener.aclose()
