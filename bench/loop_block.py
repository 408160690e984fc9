"""How long a stream replay's encoding blocks the event loop, before and after
``webchat.pages``.

    .venv/bin/python bench/loop_block.py                     # 1,000 activities of 255 KiB
    .venv/bin/python bench/loop_block.py --activities 200 --size 65536

Stores the activities in a fresh SQLite file (a temporary directory, removed at the end),
then, while a ticker task measures the event loop's largest delay (the longest time no other
task could run), replays them from the start the old way and the new way:

* ``before``: the rows read on a thread, then the whole ActivitySet encoded on the loop (the
  consumer's ``activity_set`` of MAX_REPLAY activities, as it was);
* ``after``: ``webchat.pages.stream_page`` on a thread, page after page (MAX_POLL_BYTES each,
  frames under MAX_FRAME_BYTES) until every activity is read.

Prints the largest loop delay, the total time and the largest frame of each, after an
``idle`` row: the same ticker for 3 s with nothing else to do (the machine's noise floor).
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(directory):
    os.environ["DJANGO_SETTINGS_MODULE"] = "webchat.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{directory}/bench.sqlite3"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def store(count, size):
    from webchat.models import Activity, Conversation, Tenant
    from webchat.pages import encode
    from webchat.transcript import activity_id

    conversation = Conversation.objects.create(tenant=Tenant.objects.create(name="bench"))
    filler = "x" * (size - 200)
    for start in range(0, count, 100):
        rows = []
        for n in range(start + 1, min(start + 100, count) + 1):
            data = {"type": "message", "id": activity_id(conversation.id, n), "text": filler}
            rows.append(Activity(conversation=conversation, sequence=n, data=data,
                                 size=len(encode(data))))
        Activity.objects.bulk_create(rows)
    Conversation.objects.filter(pk=conversation.pk).update(watermark=count)
    return conversation.id


async def measured(work):
    """Run ``work()`` while a ticker records the loop's largest delay; return
    ``(largest delay, total seconds, result)``."""
    loop = asyncio.get_running_loop()
    largest = 0.0
    running = True

    async def ticker():
        nonlocal largest
        while running:
            before = loop.time()
            await asyncio.sleep(0.001)
            largest = max(largest, loop.time() - before - 0.001)

    task = loop.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    result = await work()
    total = time.perf_counter() - started
    running = False
    await task
    return largest, total, result


async def main(args):
    with tempfile.TemporaryDirectory() as directory:
        await asyncio.to_thread(setup, directory)
        from webchat.conf import settings
        from webchat.models import Activity
        from webchat.pages import stream_page

        thread = ThreadPoolExecutor(1)  # one thread: Django's connection stays on it
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(thread, lambda: None)
        conversation = await loop.run_in_executor(thread, store, args.activities, args.size)

        async def before():
            rows = await loop.run_in_executor(thread, lambda: list(
                Activity.objects.filter(conversation_id=conversation)
                .order_by("sequence").values_list("sequence", "data")[: settings.max_replay]
            ))
            frame = json.dumps(
                {"activities": [data for _, data in rows], "watermark": str(rows[-1][0])},
                separators=(",", ":"),
            )
            return len(frame)

        async def after():
            cursor, largest = 0, 0
            while cursor < args.activities:
                page = await loop.run_in_executor(
                    thread, stream_page, conversation, cursor, settings.max_replay,
                    settings.max_poll_bytes, settings.max_frame_bytes,
                )  # fmt: skip
                largest = max([largest, *map(len, page.frames)])
                cursor = page.newest
            return largest

        print(f"{args.activities} activities of {args.size} bytes, Python {sys.version.split()[0]}")
        async def idle():  # the noise floor: the loop waits, the machine goes on
            await asyncio.sleep(3)
            return 0

        for name, work in (("idle", idle), ("before", before), ("after", after)):
            delay, total, frame = await measured(work)
            print(f"{name:>6}: largest loop delay {delay * 1000:8.1f} ms, total {total:6.2f} s, "
                  f"largest frame {frame / 1024 / 1024:7.2f} MiB")
        thread.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activities", type=int, default=1000, help="activities to replay")
    parser.add_argument("--size", type=int, default=255 * 1024, help="bytes of JSON each")
    asyncio.run(main(parser.parse_args()))
