"""Counters and histograms that background loops update and any thread may read."""

import bisect
import threading


class Counters:
    """A fixed set of named integer counters.

    Written by the notifier's sender and listener (on their loop or thread) and by
    publishers (drops), read by other code (health endpoints, the command, tests).
    """

    def __init__(self, *names):
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def incr(self, name, amount=1):
        """Add ``amount`` to the counter ``name`` (which must be one of the fixed names)."""
        with self._lock:
            self._values[name] += amount

    def __getitem__(self, name):
        return self._values[name]

    def snapshot(self):
        """Return a consistent copy of all counters as a plain dict."""
        with self._lock:
            return dict(self._values)

    def __repr__(self):
        return f"{type(self).__name__}({self.snapshot()!r})"


class LoopCounters(Counters):
    """Counters that only one thread writes (the event loop of the listener that owns them).

    The listener counts twice per message; with a single writer an increment needs no lock
    (see docs/benchmarks.md), and readers on other threads still see whole values: a dict
    item assignment and the C-level dict copy in :meth:`snapshot` are atomic under the GIL.
    """

    def incr(self, name, amount=1):
        """Add ``amount`` to the counter ``name``; only ever call from the owning thread."""
        self._values[name] += amount


#: Bucket upper bounds (seconds) for backplane latencies: 0.5 ms to 10 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


class Histogram:
    """A fixed-bucket histogram cheap enough for the listener's per-message path.

    ``observe`` is a ``bisect`` and two additions, with no lock: it is called from one event
    loop, and a scrape from another thread at worst sees one observation half recorded
    (``count`` and ``sum`` may disagree by one value for one scrape), which Prometheus
    tolerates. Exposed by :mod:`notifier.metrics` as a Prometheus histogram.
    """

    def __init__(self, buckets=LATENCY_BUCKETS):
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError(f"buckets must be strictly increasing, got {buckets!r}")
        self.buckets = tuple(buckets)
        # One count per bucket, plus the +Inf bucket at the end (not cumulative).
        self._counts = [0] * (len(self.buckets) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value):
        """Record one value (negative values, e.g. from clock skew, count as 0)."""
        if value < 0:
            value = 0.0
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self):
        """``[(upper bound, cumulative count), ..., ("+Inf", count)]`` for exposition."""
        counts = list(self._counts)
        total = 0
        result = []
        for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
            total += count
            result.append((bound, total))
        return result
