"""GCRA limiters: one contract, run on the memory limiter and on real Redis."""

import time
import uuid

import redis
from django.test import SimpleTestCase

from webchat.ratelimit import MemoryLimiter, Rate, RedisLimiter

from .support.redis_server import SHARED_URL, RedisServer, requires_shared_redis


class RateTests(SimpleTestCase):
    def test_refuses_nonsense(self):
        for count, period in ((0, 1), (-1, 1), (1.5, 1), (True, 1), (1, 0), (1, -2), (1, "1")):
            with self.subTest(count=count, period=period), self.assertRaises(ValueError):
                Rate(count, period)

    def test_interval(self):
        self.assertEqual(Rate(20, 10).interval_us, 500_000)
        self.assertEqual(str(Rate(20, 10)), "20/10s")


class LimiterContract:
    """Each limit is pushed past: a burst of ``count`` passes, the next is refused."""

    def limiter(self):
        raise NotImplementedError

    def wait(self, seconds):
        raise NotImplementedError

    def key(self):
        return f"k:{uuid.uuid4()}"

    def test_burst_then_refused_with_retry_after(self):
        limiter, key, rate = self.limiter(), self.key(), Rate(5, 1)
        for _ in range(5):
            self.assertTrue(limiter.hit([(key, rate)]).allowed)
        refused = limiter.hit([(key, rate)])
        self.assertFalse(refused.allowed)
        self.assertEqual(refused.refused_by, 0)
        # One interval (0.2 s) until the next hit passes, less what the hits took.
        self.assertGreater(refused.retry_after, 0.05)
        self.assertLessEqual(refused.retry_after, 0.2)
        self.assertEqual(refused.retry_after_seconds, 1)

    def test_passes_again_after_retry_after(self):
        limiter, key, rate = self.limiter(), self.key(), Rate(2, 0.4)
        limiter.hit([(key, rate)])
        limiter.hit([(key, rate)])
        refused = limiter.hit([(key, rate)])
        self.assertFalse(refused.allowed)
        self.wait(refused.retry_after + 0.02)
        self.assertTrue(limiter.hit([(key, rate)]).allowed)
        self.assertFalse(limiter.hit([(key, rate)]).allowed)

    def test_keys_are_independent(self):
        limiter, rate = self.limiter(), Rate(1, 60)
        first, second = self.key(), self.key()
        self.assertTrue(limiter.hit([(first, rate)]).allowed)
        self.assertFalse(limiter.hit([(first, rate)]).allowed)
        self.assertTrue(limiter.hit([(second, rate)]).allowed)

    def test_a_refusal_uses_up_none_of_the_other_limits(self):
        limiter = self.limiter()
        tight, loose = self.key(), self.key()
        self.assertTrue(limiter.hit([(tight, Rate(1, 60)), (loose, Rate(2, 60))]).allowed)
        refused = limiter.hit([(loose, Rate(2, 60)), (tight, Rate(1, 60))])
        self.assertFalse(refused.allowed)
        self.assertEqual(refused.refused_by, 1)
        # The loose key still has its second hit: the refused one did not take it.
        self.assertTrue(limiter.hit([(loose, Rate(2, 60))]).allowed)
        self.assertFalse(limiter.hit([(loose, Rate(2, 60))]).allowed)

    def test_the_longest_wait_is_reported(self):
        limiter, a, b = self.limiter(), self.key(), self.key()
        limiter.hit([(a, Rate(1, 1)), (b, Rate(1, 100))])
        refused = limiter.hit([(a, Rate(1, 1)), (b, Rate(1, 100))])
        self.assertEqual(refused.refused_by, 1)
        self.assertGreater(refused.retry_after, 90)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class MemoryLimiterTests(LimiterContract, SimpleTestCase):
    def setUp(self):
        self.clock = FakeClock()

    def limiter(self):
        return MemoryLimiter(clock=self.clock, sweep_at=4)

    def wait(self, seconds):
        self.clock.now += seconds

    def test_expired_keys_are_swept(self):
        limiter, rate = self.limiter(), Rate(1, 1)
        for n in range(4):
            limiter.hit([(f"old{n}", rate)])
        self.clock.now += 2
        limiter.hit([("new", rate)])
        self.assertEqual(len(limiter), 1)

    def test_live_keys_are_not_swept_on_every_hit(self):
        limiter, rate = self.limiter(), Rate(1, 60)
        for n in range(4):
            limiter.hit([(f"live{n}", rate)])
        limiter.hit([("a", rate)])  # sweeps: nothing expired, so the next waits for 8 keys
        self.assertEqual((len(limiter), limiter._next_sweep), (5, 8))
        for n in range(3):
            limiter.hit([(f"more{n}", rate)])
        self.assertEqual((len(limiter), limiter._next_sweep), (8, 8))


@requires_shared_redis
class RedisLimiterTests(LimiterContract, SimpleTestCase):
    def setUp(self):
        self.client = redis.Redis.from_url(SHARED_URL)
        self.addCleanup(self.client.close)
        self.prefix = f"test:rate:{uuid.uuid4()}"
        self.addCleanup(self._delete_keys)

    def _delete_keys(self):
        keys = list(self.client.scan_iter(f"{self.prefix}:*"))
        if keys:
            self.client.delete(*keys)

    def limiter(self):
        return RedisLimiter(self.client, self.prefix)

    def wait(self, seconds):
        time.sleep(seconds)

    def test_keys_expire_in_redis(self):
        limiter, key = self.limiter(), self.key()
        limiter.hit([(key, Rate(10, 1))])
        ttl = self.client.pttl(f"{self.prefix}:{key}")
        self.assertGreater(ttl, 0)
        self.assertLessEqual(ttl, 101)

    def test_two_clients_share_the_limit(self):
        other = redis.Redis.from_url(SHARED_URL)
        self.addCleanup(other.close)
        key, rate = self.key(), Rate(3, 60)
        first, second = self.limiter(), RedisLimiter(other, self.prefix)
        allowed = [lim.hit([(key, rate)]).allowed for lim in (first, second, first, second)]
        self.assertEqual(allowed, [True, True, True, False])

    def test_script_reloaded_after_script_flush_on_a_private_server(self):
        server = RedisServer.start_for(self)
        client = server.client()
        self.addCleanup(client.close)
        limiter, key = RedisLimiter(client, self.prefix), self.key()
        self.assertTrue(limiter.hit([(key, Rate(2, 60))]).allowed)
        client.script_flush()
        self.assertTrue(limiter.hit([(key, Rate(2, 60))]).allowed)
        self.assertFalse(limiter.hit([(key, Rate(2, 60))]).allowed)
