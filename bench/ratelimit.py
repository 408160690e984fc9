"""What a rate-limit check costs a request: one hit of three limits (token, IP, tenant).

    .venv/bin/python bench/ratelimit.py            # print the table (results: docs/benchmarks.md)

Starts a private redis-server on a free port (stopped by pid at the end) and times, on one
thread, ``MemoryLimiter.hit`` and ``RedisLimiter.hit`` (one EVALSHA of the GCRA script) with
three keys, as ``webchat.throttle.hit`` sends them for a post; then the same Redis hits from
4 threads at once (the API's database threads). Keys are spread over 10,000 users so the
limits never refuse (a refusal costs the same round trip).
"""

import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")

import django  # noqa: E402

django.setup()

from tests.support.redis_server import RedisServer  # noqa: E402
from webchat.ratelimit import MemoryLimiter, Rate, RedisLimiter  # noqa: E402

HITS = 20_000
THREADS = 4
RATES = (Rate(10**6, 10), Rate(10**6, 10), Rate(10**6, 10))


def limits(n):
    return [(f"posts:token:{n % 10_000}", RATES[0]), (f"posts:ip:{n % 500}", RATES[1]),
            ("posts:tenant:1", RATES[2])]  # fmt: skip


def time_hits(limiter, count):
    started = time.perf_counter()
    for n in range(count):
        if not limiter.hit(limits(n)).allowed:
            raise RuntimeError("a limit refused: the benchmark's rates are too low")
    return (time.perf_counter() - started) / count


def threaded(make_limiter):
    per_thread = HITS // THREADS
    limiters = [make_limiter() for _ in range(THREADS)]
    threads = [threading.Thread(target=time_hits, args=(lim, per_thread)) for lim in limiters]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return HITS / (time.perf_counter() - started)


def main():
    server = RedisServer()
    try:
        server.start()
        client = server.client()
        memory = [time_hits(MemoryLimiter(), HITS) for _ in range(3)]
        redis_hits = [time_hits(RedisLimiter(client, "bench"), HITS) for _ in range(3)]
        rate = threaded(lambda: RedisLimiter(client, "bench"))
        client.close()
    finally:
        server.cleanup()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {HITS} hits of 3 limits each, median of 3\n")
    print("| Limiter | per hit |")
    print("|---|---|")
    print(f"| MemoryLimiter, one thread | {statistics.median(memory) * 1e6:.1f} µs |")
    print(f"| RedisLimiter (EVALSHA), one thread | {statistics.median(redis_hits) * 1e6:.1f} µs |")
    print(f"| RedisLimiter, {THREADS} threads | {rate:,.0f} hits/s in all |")


if __name__ == "__main__":
    main()
