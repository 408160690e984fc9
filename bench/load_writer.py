"""The "fan-out only" writer of ``bench/load.py``: activities without HTTP.

A worker process beside the replicas (as a bot worker or a management command would be)
writes activities with ``webchat.transcript.append_activity`` at a given rate, and its
notifier publishes each one after commit: with the Redis backplane a PUBLISH that both
replicas' listeners deliver, with a channels_redis layer a ``group_send`` that reaches both
replicas' consumers. The replicas then only read and send: this measures the stream's
fan-out path without the cost of Django's HTTP request handling. Run by the harness with
the replicas' environment::

    python bench/load_writer.py --config targets.json --phase f --rate 200 --duration 10 \\
        --out result.json
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")

import django  # noqa: E402

django.setup()

from asgiref.sync import sync_to_async  # noqa: E402
from django.db import connection  # noqa: E402

from notifier.events import NotifyEvent  # noqa: E402
from notifier.runtime import get_notifier  # noqa: E402
from webchat.models import Conversation  # noqa: E402
from webchat.transcript import append_activity  # noqa: E402


def write(conversation_id, phase, i):
    sent = time.monotonic_ns()
    append_activity(
        Conversation(pk=conversation_id),
        {"type": "message", "text": f"load {phase} {i}", "from": {"id": "bot", "role": "bot"},
         "channelData": {"t": sent, "p": phase, "r": -1}},
    )  # fmt: skip
    return sent


def open_connection():
    # Looked up here, in the writing thread: `connection` resolves to the calling thread's.
    connection.ensure_connection()


async def main(args):
    with open(args.config) as handle:
        targets = [conversation for conversation, _secret in json.load(handle)["targets"]]
    # Binds the notifier to this loop (publishes after commit, in the writing thread, hop
    # here) and starts its sender; a worker that only writes needs no listener.
    notifier = get_notifier()
    await notifier.astart()
    loop = asyncio.get_running_loop()
    write_async = sync_to_async(write, thread_sensitive=True)
    # Warm up before the clock starts: the database connection, and the notifier's first
    # publish (the Redis sender, or a channels_redis layer, connects on first use: ~0.1-0.2 s
    # during which the first writes' notifications would wait). No socket listens to it.
    await sync_to_async(open_connection, thread_sensitive=True)()
    await notifier.apublish(NotifyEvent("0", "load-writer-warm-up", 1))
    await asyncio.sleep(0.5)
    per_conversation = Counter()
    tasks = set()
    errors = Counter()
    behind = 0.0
    count = int(args.rate * args.duration) if args.rate > 0 else 0
    first = None
    start = loop.time() + 0.05

    async def one(i):
        nonlocal first
        conversation = targets[i % len(targets)]
        try:
            sent = await write_async(conversation, args.phase, i)
        except Exception as exc:
            errors[type(exc).__name__] += 1
            return
        first = sent if first is None else min(first, sent)
        per_conversation[conversation] += 1

    started = time.monotonic()
    if args.rate <= 0:
        # As fast as one writer can: each write after the previous one committed.
        end, i = started + args.duration, 0
        while time.monotonic() < end:
            await one(i)
            i += 1
        count = 0
    for i in range(count):
        delay = start + i / args.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        behind = max(behind, -delay)
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    seconds = time.monotonic() - started
    await asyncio.sleep(0.2)  # the last publishes leave
    await notifier.aclose()
    ok = sum(per_conversation.values())
    with open(args.out, "w") as handle:
        json.dump({
            "phase": args.phase, "ok": ok, "statuses": dict(errors) or {"ok": ok},
            "seconds": seconds, "rate": ok / seconds if seconds else 0.0,
            "behind_ms": round(behind * 1000, 1), "http_ms": {"p50": 0.0, "p99": 0.0},
            "first_ns": first, "last_ns": None, "per_conversation": dict(per_conversation),
        }, handle)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="targets JSON (bench/load_poster.py)")
    parser.add_argument("--phase", required=True, help="a tag carried in channelData.p")
    parser.add_argument(
        "--rate",
        type=float,
        required=True,
        help="activities/s; 0: one write after another, as fast as possible",
    )
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--out", required=True, help="write the result JSON here")
    asyncio.run(main(parser.parse_args()))
