"""The backplane's Prometheus metrics, read from a running notifier and listener on real
Redis at scrape time: counters by reason, listener state, resyncs, probe and lag histograms."""

import time
import uuid

import redis.asyncio as aioredis
from django.test import SimpleTestCase
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from notifier import lag, wire
from notifier.backends.memory import InMemoryNotifier
from notifier.events import NotifyEvent
from notifier.health import wait_until_ready
from notifier.metrics import NotifierCollector
from notifier.runtime import Runtime
from tests.support.redis_server import SHARED_URL, requires_shared_redis
from tests.test_backplane_probe import close_runtime, started_runtime
from tests.test_notifier_redis import eventually

TIMEOUT = 5


def scrape(runtime):
    registry = CollectorRegistry()
    registry.register(NotifierCollector(runtime=lambda: runtime))
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


class MemoryMetricsTests(SimpleTestCase):
    async def test_a_local_only_notifier_exposes_its_counters_and_is_up(self):
        notifier = InMemoryNotifier(channel_layer=None)
        await notifier.apublish(NotifyEvent("t", "c", 1))
        samples = scrape(Runtime(notifier))
        self.assertEqual(samples[("webchat_notifier_published_total", ())], 1)
        self.assertEqual(samples[("webchat_backplane_up", ())], 1)
        self.assertNotIn(("webchat_backplane_received_total", ()), samples)


@requires_shared_redis
class RedisMetricsTests(SimpleTestCase):
    async def test_counters_state_resyncs_and_histograms(self):
        runtime = await started_runtime(SHARED_URL)
        listener = runtime.listener
        client = aioredis.Redis.from_url(SHARED_URL)
        try:
            self.assertTrue((await wait_until_ready(runtime, timeout=TIMEOUT))["ok"])
            await runtime.notifier.apublish(NotifyEvent("t", "c", 1))  # comes back: self_echo
            await client.publish(listener.channel, b"not json")
            # Another replica's messages: the reference's (no timestamp), then one of ours.
            await client.publish(listener.channel, wire.encode(NotifyEvent("t", "c", 2),
                                                               uuid.uuid4()))
            stamped = lag.stamp(wire.encode(NotifyEvent("t", "c", 3), uuid.uuid4()),
                                time.time_ns() // 1_000_000 - 20)
            await client.publish(listener.channel, stamped)
            await eventually(lambda: listener.counters["received"] == 4)
            await eventually(lambda: runtime.notifier.stats()["mirrored"] == 1)
            samples = scrape(runtime)
        finally:
            await client.aclose()
            await close_runtime(runtime)
        expected = {
            ("webchat_notifier_published_total", ()): 1,
            ("webchat_notifier_mirrored_total", ()): 1,
            ("webchat_notifier_publish_failures_total", ()): 0,
            ("webchat_backplane_received_total", ()): 4,
            ("webchat_backplane_delivered_total", ()): 2,
            ("webchat_backplane_dropped_total", (("reason", "malformed"),)): 1,
            ("webchat_backplane_dropped_total", (("reason", "self_echo"),)): 1,
            ("webchat_backplane_dropped_total", (("reason", "unknown_version"),)): 0,
            ("webchat_backplane_connects_total", ()): 1,
            ("webchat_backplane_reconnects_total", ()): 0,
            ("webchat_backplane_listener_state", (("state", "connected"),)): 1,
            ("webchat_backplane_listener_state", (("state", "reconnecting"),)): 0,
            ("webchat_backplane_resyncs_total", (("reason", "connect"),)): 1,
            ("webchat_backplane_resyncs_total", (("reason", "reconnect"),)): 0,
            ("webchat_backplane_up", ()): 1,
            # Only the stamped foreign message is measured (our own is a dropped echo).
            ("webchat_backplane_lag_seconds_count", ()): 1,
        }
        for key, value in expected.items():
            self.assertEqual(samples[key], value, key)
        self.assertGreaterEqual(samples[("webchat_backplane_lag_seconds_sum", ())], 0.02)
        self.assertGreaterEqual(samples[("webchat_backplane_probe_round_trip_seconds_count",
                                         ())], 1)
        self.assertGreaterEqual(samples[("webchat_backplane_probe_age_seconds", ())], 0)
        buckets = [value for (name, labels), value in samples.items()
                   if name == "webchat_backplane_probe_round_trip_seconds_bucket"]
        self.assertEqual(len(buckets), 15)  # 14 bounds and +Inf
