"""In-process CPU per notification of the listener's dispatch (no Redis, no sockets).

    .venv/bin/python bench/dispatch.py [ROOT] [--groups 100] [--rounds 5]

Feeds the listener's dispatcher batches of 230 wire v1 payloads (what one 64 KiB socket read
brings), delivering through ``LocalChannelLayer`` to one waiting consumer per group, and
prints the best and the median round in µs of process CPU per notification. ``ROOT``: the
repository whose ``notifier`` is timed (default: this one), so two commits can be compared
from two worktrees; before the dispatcher existed (ae32e16) it times the listener's inlined
loop body instead.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

BATCH, PER_ROUND = 230, 23_000


async def measure(groups, rounds):
    from notifier import wire
    from notifier.backends.redis import RedisNotifier
    from notifier.events import NotifyEvent, group_name
    from notifier.layers import LocalChannelLayer

    layer = LocalChannelLayer()
    notifier = RedisNotifier("redis://unused", channel="c", channel_layer=layer)
    listener = notifier.listener(probe=False, resync=False)
    other = uuid.uuid4()
    replies = [[b"message", b"c", wire.encode(NotifyEvent("bench", f"conv-{i % groups}", i), other)]
               for i in range(PER_ROUND)]
    batches = [replies[i:i + BATCH] for i in range(0, PER_ROUND, BATCH)]
    received = [0]

    async def consume(channel):
        while True:
            await layer.receive(channel)
            received[0] += 1

    tasks = []
    for k in range(groups):
        channel = await layer.new_channel()
        await layer.group_add(group_name("bench", f"conv-{k}"), channel)
        tasks.append(asyncio.create_task(consume(channel)))
    await asyncio.sleep(0.05)
    if hasattr(listener, "dispatcher"):
        dispatch = listener.dispatcher.dispatch
    else:  # ae32e16: Listener._session's loop body
        async def dispatch(batch):
            deliver, nowait = listener._deliver, listener._deliver_nowait
            for response in batch:
                if response[0] == b"message" and response[1] == listener._channel_bytes:
                    payload = response[2]
                    message = listener._accept(payload)
                    if type(message) is not str:
                        event = message.event
                        if nowait is None or not nowait(event):
                            await deliver(event)
                        listener._delivered(payload, message)
    results = []
    for _ in range(rounds):
        start, cpu = received[0], time.process_time()
        for batch in batches:
            await dispatch(batch)
            await asyncio.sleep(0)  # the consumers run, as after a socket read
        while received[0] - start < PER_ROUND:
            await asyncio.sleep(0)
        results.append((time.process_time() - cpu) / PER_ROUND * 1e6)
    for task in tasks:
        task.cancel()
    return min(results), statistics.median(results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent),
                        help="repository whose notifier is timed")
    parser.add_argument("--groups", type=int, default=100, help="local groups, one consumer each")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of 23,000 notifications")
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    best, median = asyncio.run(measure(args.groups, args.rounds))
    print(f"{args.root}: {args.groups} groups: best {best:.2f} µs, median {median:.2f} µs "
          "per notification")


if __name__ == "__main__":
    main()
