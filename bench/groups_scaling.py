"""Why 10,000 groups cost more than 100: the subscriber's CPU per notification, split by stage,
for workloads that separate the number of consumers woken from the number of groups held.

    .venv/bin/python bench/groups_scaling.py                   # print the table
    .venv/bin/python bench/groups_scaling.py --rounds 7

In-process (no Redis, no sockets), as ``bench/dispatch.py``: the listener's dispatcher is fed
batches of 230 wire v1 payloads (what one 64 KiB socket read brings in
``bench/backplane.py``'s burst), delivering through ``LocalChannelLayer`` to one consumer
per group waiting in ``receive``; after each batch the loop runs the woken consumers. Two
stages, timed with the thread's CPU clock around each batch:

* *listener*: ``dispatch(batch)``: decode, checks, counters, lag, group name, group send
  (resolving the waiting consumers' futures);
* *consumers*: what runs until every delivered message was received: the woken tasks'
  steps, their ``receive`` returns and the next ``receive`` calls (waiting again, or
  popping a message queued behind the first).

Workloads (payload order; every batch 230 notifications):

* ``100 groups``: round-robin over 100 conversations, as the benchmark: a batch wakes 100
  consumers, the other 130 messages wait in their queues (0.43 wake-ups per notification);
* ``230 groups``: round-robin over 230: a batch wakes 230 consumers (1.0 per notification),
  a working set as small as the first;
* ``1,000 groups``, ``3,000 groups``, ``10,000 groups``: round-robin, 1.0 per notification,
  the working set growing (the last is the benchmark's);
* ``10,000 groups, 100 per batch``: 10,000 consumers held, but each batch addresses a window
  of 100 consecutive groups (0.43 per notification, the first workload's pattern), the window
  moving on by 100 every batch so every consumer is visited.

So ``100`` to ``230`` is the wake pattern at a small working set, ``230`` to ``10,000`` and
``100`` to ``10,000, 100 per batch`` the working set at an equal wake pattern. Rounds of
23,000 notifications, interleaved across the workloads; the median round is reported.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BATCH, PER_ROUND = 230, 23_000
WORKLOADS = {
    "100 groups": (100, None),
    "230 groups": (230, None),
    "1,000 groups": (1_000, None),
    "3,000 groups": (3_000, None),
    "10,000 groups": (10_000, None),
    "10,000 groups, 100 per batch": (10_000, 100),
}


class Workload:
    """One layer, listener and set of waiting consumers, and its batches of payloads."""

    def __init__(self, groups, window):
        self.groups, self.window = groups, window

    async def start(self):
        from notifier import wire
        from notifier.backends.redis import RedisNotifier
        from notifier.events import NotifyEvent, group_name
        from notifier.layers import LocalChannelLayer

        self.layer = layer = LocalChannelLayer()
        notifier = RedisNotifier("redis://unused", channel="c", channel_layer=layer)
        self.dispatch = notifier.listener(probe=False, resync=False).dispatcher.dispatch
        other = uuid.uuid4()
        order = []
        for i in range(PER_ROUND):
            if self.window is None:
                order.append(i % self.groups)
            else:  # batch b covers groups [b * window, (b + 1) * window) modulo groups
                b = i // BATCH
                order.append((b * self.window + i % self.window) % self.groups)
        replies = [[b"message", b"c", wire.encode(NotifyEvent("bench", f"conv-{k}", i), other)]
                   for i, k in enumerate(order)]  # fmt: skip
        self.batches = [replies[i : i + BATCH] for i in range(0, PER_ROUND, BATCH)]
        # A batch wakes each consumer it addresses once; the rest wait in its queue.
        self.wakes = sum(len(set(order[i : i + BATCH]))
                         for i in range(0, PER_ROUND, BATCH)) / PER_ROUND  # fmt: skip
        self.received = 0
        self.tasks = []
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for k in range(self.groups):
            channel = await layer.new_channel()
            await layer.group_add(group_name("bench", f"conv-{k}"), channel)
            self.tasks.append(asyncio.create_task(self.consume(channel)))
        await asyncio.sleep(0.05)
        # What each consumer keeps (task, coroutine frame, channel state, group entry).
        self.bytes_per_group = (tracemalloc.get_traced_memory()[0] - before) / self.groups
        tracemalloc.stop()

    async def consume(self, channel):
        receive = self.layer.receive
        while True:
            await receive(channel)
            self.received += 1

    async def round(self):
        """CPU µs per notification: (listener, consumers)."""
        clock = time.thread_time_ns
        listener = consumers = 0
        for batch in self.batches:
            expected = self.received + len(batch)
            t0 = clock()
            await self.dispatch(batch)
            t1 = clock()
            while self.received < expected:
                await asyncio.sleep(0)
            consumers += clock() - t1
            listener += t1 - t0
        return listener / PER_ROUND / 1000, consumers / PER_ROUND / 1000

    def stop(self):
        for task in self.tasks:
            task.cancel()


async def measure(rounds, names):
    workloads = {name: Workload(*WORKLOADS[name]) for name in names}
    for workload in workloads.values():
        await workload.start()
        await workload.round()  # warm
    results = {name: [] for name in names}
    for _ in range(rounds):
        for name, workload in workloads.items():
            results[name].append(await workload.round())
    for workload in workloads.values():
        workload.stop()
    return workloads, results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds of 23,000 per workload")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS),
                        choices=list(WORKLOADS), help="which workloads")  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    load = Path("/proc/loadavg").read_text().split()[0]
    workloads, results = asyncio.run(measure(args.rounds, args.workloads))
    print(f"Load average (1 min) at the start {load}, at the end "
          f"{Path('/proc/loadavg').read_text().split()[0]}; {args.rounds} interleaved rounds, "
          "median (range) of CPU µs per notification")  # fmt: skip
    print()
    print("| workload | wake-ups per notification | bytes held per group | listener | consumers "
          "| total | capacity vs 100 groups | best round: total, vs 100 groups |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base = best_base = None
    for name in args.workloads:
        rows = results[name]
        lst = [r[0] for r in rows]
        con = [r[1] for r in rows]
        tot = [a + b for a, b in rows]
        total = statistics.median(tot)
        base = base or total
        best = min(tot)
        best_base = best_base or best
        print(f"| {name} | {workloads[name].wakes:.2f} | {workloads[name].bytes_per_group:,.0f} "
              f"| {statistics.median(lst):.2f} ({min(lst):.2f}-{max(lst):.2f}) "
              f"| {statistics.median(con):.2f} ({min(con):.2f}-{max(con):.2f}) "
              f"| {total:.2f} ({min(tot):.2f}-{max(tot):.2f}) | {base / total:.2f}x "
              f"| {best:.2f}, {best_base / best:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
