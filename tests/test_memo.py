"""The notifier's one bounded cache: computed once, bounded, nothing stored on errors."""

from django.test import SimpleTestCase

from notifier.memo import BoundedCache


class BoundedCacheTests(SimpleTestCase):
    def test_computes_once_per_key_while_remembered(self):
        calls = []
        cache = BoundedCache(lambda key: calls.append(key) or key * 2, 8)
        self.assertEqual([cache[1], cache[1], cache[2]], [2, 2, 4])
        self.assertEqual(calls, [1, 2])

    def test_never_holds_more_than_maxsize_entries(self):
        cache = BoundedCache(str, 3)
        for key in range(100):
            self.assertEqual(cache[key], str(key))
            self.assertLessEqual(len(cache), 3)
        self.assertIn(99, cache)  # the newest is always kept

    def test_an_error_is_raised_and_not_remembered(self):
        def compute(key):
            if key < 0:
                raise ValueError(f"negative: {key}")
            return key

        cache = BoundedCache(compute, 3)
        with self.assertRaisesMessage(ValueError, "negative: -1"):
            cache[-1]
        self.assertNotIn(-1, cache)
        self.assertEqual(cache[1], 1)
