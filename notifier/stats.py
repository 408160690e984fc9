"""Thread-safe counters that background loops increment and any thread may read."""

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
        return f"Counters({self.snapshot()!r})"
