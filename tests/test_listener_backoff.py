"""The listener's reconnect schedule (pure logic, no Redis)."""

import itertools

from django.test import SimpleTestCase

from notifier.backoff import JITTER, SCHEDULE_MS, Backoff, delay_ms


class DelayTests(SimpleTestCase):
    def test_nominal_schedule_then_5000_forever(self):
        delays = [delay_ms(attempt) for attempt in range(1, 10)]
        self.assertEqual(delays, [100, 250, 500, 1000, 2000, 5000, 5000, 5000, 5000])

    def test_jitter_is_plus_or_minus_20_percent(self):
        for attempt, nominal in enumerate(SCHEDULE_MS, start=1):
            self.assertAlmostEqual(delay_ms(attempt, rand=0.0), nominal * 0.8)
            self.assertAlmostEqual(delay_ms(attempt, rand=1.0), nominal * 1.2)
            self.assertAlmostEqual(delay_ms(attempt, rand=0.25), nominal * 0.9)

    def test_attempts_count_from_one(self):
        with self.assertRaisesMessage(ValueError, "attempt counts from 1, got 0"):
            delay_ms(0)

    def test_jitter_must_be_below_one(self):
        with self.assertRaises(ValueError):
            delay_ms(1, jitter=1.0)


class BackoffTests(SimpleTestCase):
    def test_seconds_follow_the_schedule_with_the_given_randomness(self):
        draws = itertools.cycle([0.0, 1.0])
        backoff = Backoff(rand=lambda: next(draws))
        got = [round(backoff.next_delay(), 6) for _ in range(7)]
        self.assertEqual(got, [0.08, 0.3, 0.4, 1.2, 1.6, 6.0, 4.0])
        self.assertEqual(backoff.attempt, 7)

    def test_real_randomness_stays_within_the_jitter_band(self):
        backoff = Backoff()
        for nominal in SCHEDULE_MS + (5000,) * 20:
            delay = backoff.next_delay() * 1000
            self.assertGreaterEqual(delay, nominal * (1 - JITTER))
            self.assertLessEqual(delay, nominal * (1 + JITTER))

    def test_reset_after_success_starts_over_at_100_ms(self):
        backoff = Backoff(rand=lambda: 0.5)
        for _ in range(8):
            backoff.next_delay()
        backoff.reset()
        self.assertEqual(backoff.attempt, 0)
        self.assertAlmostEqual(backoff.next_delay(), 0.1)
        self.assertAlmostEqual(backoff.next_delay(), 0.25)

    def test_custom_schedule(self):
        backoff = Backoff((10, 20), jitter=0.0)
        self.assertEqual([backoff.next_delay() for _ in range(3)], [0.01, 0.02, 0.02])

    def test_rejects_an_empty_or_negative_schedule(self):
        for schedule in [(), (100, -1)]:
            with self.assertRaises(ValueError):
                Backoff(schedule)
