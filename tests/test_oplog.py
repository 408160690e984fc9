"""notifier.oplog: the seed spec's events under the logger ``notifier_redis``, rate-limited,
emitted by the real listener against real Redis; the failed-reconnect counter and metric."""

import asyncio
import logging
import uuid
from unittest import mock

import redis.asyncio as aioredis
from django.test import SimpleTestCase
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest

from notifier import oplog
from notifier.backends.redis import RedisNotifier
from notifier.metrics import NotifierCollector
from notifier.runtime import Runtime
from tests.support.redis_server import (
    SHARED_URL,
    RedisServer,
    requires_redis_server,
    requires_shared_redis,
    unique_channel,
)
from tests.test_listener import eventually, make_listener

TIMEOUT = 10  # generous: the machine is shared


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class RateLimiterTests(SimpleTestCase):
    def test_one_pass_per_interval_and_key_then_the_count_of_refusals(self):
        clock = FakeClock()
        limiter = oplog.RateLimiter(interval=10.0, clock=clock)
        self.assertEqual(limiter.allow("a"), (True, 0))
        self.assertEqual(limiter.allow("a"), (False, 1))
        self.assertEqual(limiter.allow("b"), (True, 0))  # each key on its own
        clock.now += 9.9
        self.assertEqual(limiter.allow("a"), (False, 2))
        clock.now += 0.1
        self.assertEqual(limiter.allow("a"), (True, 2))
        self.assertEqual(limiter.allow("a"), (False, 1))


class EmitTests(SimpleTestCase):
    def setUp(self):
        patcher = mock.patch.object(oplog, "_limiter", oplog.RateLimiter(clock=FakeClock()))
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_the_event_name_leads_under_the_notifier_redis_logger(self):
        with self.assertLogs("notifier_redis", "WARNING") as logs:
            oplog.publish_dropped("redis://h:6379/0", retrying=3,
                                  error=TypeError("bad call = here"))
        [record] = logs.records
        self.assertEqual(record.name, "notifier_redis")
        self.assertEqual(record.levelno, logging.WARNING)
        self.assertEqual(record.getMessage(), 'redis_publish_dropped url=redis://h:6379/0 '
                                              'retrying=3 error="TypeError: bad call = here"')
        self.assertEqual(record.event, "redis_publish_dropped")
        self.assertEqual(record.fields["retrying"], 3)

    def test_a_flood_is_one_record_per_interval_and_the_next_counts_the_rest(self):
        with self.assertLogs("notifier_redis", "WARNING") as logs:
            for _ in range(50):
                oplog.payload_dropped("malformed", b"x", "not JSON")
            oplog._limiter.clock.now += oplog.INTERVAL
            oplog.payload_dropped("malformed", b"x", "not JSON")
        self.assertEqual([r.getMessage() for r in logs.records], [
            'redis_decode_err bytes=1 error="not JSON"',
            'redis_decode_err bytes=1 error="not JSON" suppressed=49',
        ])


@requires_shared_redis
class ListenerEventTests(SimpleTestCase):
    async def test_decode_errors_and_unknown_versions_are_warnings(self):
        channel = unique_channel()
        listener, recorder, events = make_listener(SHARED_URL, channel)
        listener.start()
        publisher = aioredis.Redis.from_url(SHARED_URL)
        foreign = str(uuid.uuid4())
        unknown = (b'{"tenant_id":"t","conversation_id":"c","new_watermark":1,"version":2,'
                   b'"instance_id":"%s"}' % foreign.encode())
        try:
            await listener.wait_connected(TIMEOUT)
            with mock.patch.object(oplog, "_limiter", oplog.RateLimiter()), \
                    self.assertLogs("notifier_redis", "WARNING") as logs:
                await publisher.publish(channel, b"{not json")
                await publisher.publish(channel, unknown)
                await eventually(lambda: len(recorder.outcomes) == 2, TIMEOUT)
        finally:
            await publisher.aclose()
            await listener.aclose()
        self.assertEqual(recorder.outcomes, ["drop:malformed", "drop:unknown_version"])
        self.assertEqual([r.event for r in logs.records],
                         ["redis_decode_err", "redis_unknown_version"])


@requires_redis_server
class ReconnectEventTests(SimpleTestCase):
    async def test_disconnected_reconnect_fail_reconnect_ok_and_the_counter(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        channel = unique_channel()
        notifier = RedisNotifier(server.url, channel=channel)
        runtime = Runtime(notifier)
        await runtime.astart()
        listener = runtime.listener
        try:
            await listener.wait_connected(TIMEOUT)
            with mock.patch.object(oplog, "_limiter", oplog.RateLimiter()), \
                    self.assertLogs("notifier_redis", "INFO") as logs:
                await asyncio.to_thread(server.stop)
                await eventually(lambda: listener.counters["reconnect_failures"] >= 1, TIMEOUT)
                await asyncio.to_thread(server.start)
                await listener.wait_connected(TIMEOUT)
            events = [(r.event, r.levelname) for r in logs.records]
            self.assertEqual(events[0], ("redis_disconnected", "WARNING"))
            self.assertIn(("redis_reconnect_fail", "WARNING"), events)
            self.assertEqual(events[-1], ("redis_reconnect_ok", "INFO"))
            registry = CollectorRegistry()
            registry.register(NotifierCollector(lambda: runtime))
            exposition = generate_latest(registry).decode()
            failures = listener.counters["reconnect_failures"]
            self.assertIn(f"webchat_backplane_reconnect_failures_total {failures:.1f}",
                          exposition)
        finally:
            await runtime.aclose()
