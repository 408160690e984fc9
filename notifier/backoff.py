"""Reconnect delays: 100, 250, 500, 1000, 2000, then 5000 ms, each with ±20 % jitter.

Pure logic, no I/O: the listener asks :meth:`Backoff.next_delay` after each failed attempt
and calls :meth:`Backoff.reset` once it is subscribed again. The jitter keeps replicas that
lost Redis at the same moment from reconnecting in lockstep.
"""

import random

#: Delays in milliseconds; the last one repeats for every further attempt.
SCHEDULE_MS = (100, 250, 500, 1000, 2000, 5000)

#: Each delay is scaled by a factor drawn uniformly from [1 - JITTER, 1 + JITTER].
JITTER = 0.2


def delay_ms(attempt, *, schedule=SCHEDULE_MS, jitter=JITTER, rand=0.5):
    """Return the delay before reconnect ``attempt`` (1-based), ``rand`` in [0, 1) as jitter.

    ``rand=0.5`` gives the nominal delay, 0 the shortest, values near 1 the longest.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    nominal = schedule[min(attempt, len(schedule)) - 1]
    return nominal * (1.0 - jitter + 2.0 * jitter * rand)


class Backoff:
    """Counts consecutive failures and hands out the delay before the next attempt."""

    def __init__(self, schedule=SCHEDULE_MS, *, jitter=JITTER, rand=random.random):
        if not schedule or any(step < 0 for step in schedule):
            raise ValueError(f"schedule must hold non-negative delays, got {schedule!r}")
        self.schedule = tuple(schedule)
        self.jitter = jitter
        self._rand = rand
        #: Failed attempts since the last success (0 after reset()).
        self.attempt = 0

    def next_delay(self):
        """Record one more failed attempt and return the seconds to wait before the next."""
        self.attempt += 1
        return delay_ms(self.attempt, schedule=self.schedule, jitter=self.jitter,
                        rand=self._rand()) / 1000.0

    def reset(self):
        """Called after a success: the next failure waits the first, shortest delay again."""
        self.attempt = 0
