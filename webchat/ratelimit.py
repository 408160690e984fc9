"""Rate limiting by GCRA (the generic cell rate algorithm): one timestamp per key.

A :class:`Rate` of ``count`` per ``period`` seconds lets a burst of ``count`` through at
once, then one more every ``period / count`` seconds. Each key keeps its "theoretical
arrival time" (TAT); a hit moves it on by one interval and is refused when that would put
it more than ``period`` ahead of now. A refused hit changes nothing, and reports how long
until it would pass (``Retry-After``).

:meth:`~BaseLimiter.hit` takes several ``(key, rate)`` pairs at once (a token's, an IP's,
a tenant's): the hit passes only if every one of them allows it, and only then is each
moved on, so a refusal by one limit does not use up the others.

Two limiters obey the same contract (``tests/test_ratelimit.py`` runs it on both):
:class:`MemoryLimiter` (this process only) and :class:`RedisLimiter`, shared by every
process on the same Redis through one Lua script per hit: one round trip, atomic, timed by
Redis' own clock so replicas' clocks do not matter.
"""

import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` hits per ``period`` seconds, in a burst or spread out."""

    count: int
    period: float

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count <= 0:
            raise ValueError(f"a rate's count must be a positive integer, not {self.count!r}")
        if (
            isinstance(self.period, bool)
            or not isinstance(self.period, int | float)
            or not 0 < self.period < 10**7
        ):
            raise ValueError(f"a rate's period must be positive seconds, not {self.period!r}")

    @property
    def interval_us(self) -> int:
        return max(1, round(self.period * 1_000_000 / self.count))

    @property
    def period_us(self) -> int:
        return round(self.period * 1_000_000)

    def __str__(self):
        return f"{self.count}/{self.period:g}s"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a hit got: allowed, or refused until ``retry_after`` seconds from now."""

    allowed: bool
    retry_after: float = 0.0
    #: The index of the (key, rate) pair that refused for longest, None when allowed.
    refused_by: int | None = None
    #: What that pair limits (``webchat.throttle`` names it: token, ip or tenant).
    scope: str | None = None

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds for ``Retry-After``: rounded up, at least 1."""
        return max(1, math.ceil(self.retry_after))


ALLOWED = Decision(True)


class BaseLimiter:
    """The contract: ``hit(limits)`` with ``limits`` a sequence of ``(key, Rate)``."""

    def hit(self, limits) -> Decision:
        raise NotImplementedError("subclasses of BaseLimiter must implement hit()")

    def close(self) -> None:
        """Called when the limiter is dropped (settings changed, tests)."""


def _gcra(now_us: int, tats: list, rates) -> tuple[int, int, list]:
    """The GCRA step shared by the memory limiter (the Lua script is the same steps):
    return ``(refused index or -1, wait in microseconds, new TATs)``."""
    refused, wait, new = -1, 0, []
    for index, (tat, rate) in enumerate(zip(tats, rates, strict=True)):
        moved = max(tat or 0, now_us) + rate.interval_us
        ahead = moved - now_us - rate.period_us
        if ahead > wait:
            refused, wait = index, ahead
        new.append(moved)
    return refused, wait, new


class MemoryLimiter(BaseLimiter):
    """This process's limits: a dict of TATs under a lock (views run on several threads).

    Keys whose TAT has passed hold nothing a fresh key would not: they are dropped once the
    dict holds ``sweep_at`` keys, so it stays bounded by the keys active in one period. The
    next sweep waits for the dict to double, so many live keys cost no sweep per hit.
    """

    def __init__(self, clock=time.monotonic, sweep_at: int = 10_000):
        self._clock = clock
        self._sweep_at = sweep_at
        self._next_sweep = sweep_at
        self._tats: dict[str, int] = {}
        self._lock = threading.Lock()

    def hit(self, limits) -> Decision:
        keys = [key for key, _ in limits]
        rates = [rate for _, rate in limits]
        with self._lock:
            now = int(self._clock() * 1_000_000)
            refused, wait, new = _gcra(now, [self._tats.get(key) for key in keys], rates)
            if refused >= 0:
                return Decision(False, wait / 1_000_000, refused)
            if len(self._tats) >= self._next_sweep:
                self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
                self._next_sweep = max(self._sweep_at, 2 * len(self._tats))
            self._tats.update(zip(keys, new, strict=True))
        return ALLOWED

    def __len__(self):
        return len(self._tats)


# KEYS: the limits' keys. ARGV: interval and period of each, in microseconds. Returns
# {0, 0} when allowed, else {index of the refusing key (1-based), microseconds to wait}.
# TIME is allowed in scripts since Redis 5 (effects replication, the only kind in 7).
# TATs are stored with %.0f: tostring() would print 16-digit numbers in exponent form.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local refused, wait = 0, 0
local moved = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  moved[i] = tat + interval
  local ahead = moved[i] - now - period
  if ahead > wait then refused, wait = i, ahead end
end
if refused > 0 then return {refused, wait} end
for i, key in ipairs(KEYS) do
  local ttl = math.floor((moved[i] - now) / 1000) + 1
  redis.call('SET', key, string.format('%.0f', moved[i]), 'PX', ttl)
end
return {0, 0}
"""


class RedisLimiter(BaseLimiter):
    """Limits shared through Redis: one EVALSHA per hit (redis-py's ``Script`` reloads the
    script when Redis lost it, e.g. after a restart). Errors propagate: the caller decides
    what a hit gets while Redis is down (``webchat.throttle`` falls back to memory)."""

    def __init__(self, client, key_prefix: str):
        self._client = client
        self._prefix = key_prefix
        self._script = client.register_script(GCRA_SCRIPT)

    def hit(self, limits) -> Decision:
        keys = [f"{self._prefix}:{key}" for key, _ in limits]
        args = []
        for _, rate in limits:
            args += [rate.interval_us, rate.period_us]
        refused, wait = self._script(keys=keys, args=args)
        if refused:
            return Decision(False, int(wait) / 1_000_000, int(refused) - 1)
        return ALLOWED

    def close(self) -> None:
        self._client.close()
