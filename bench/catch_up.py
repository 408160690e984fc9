"""The stream's catch-up (``webchat.catch_up``): what a watermark sweep costs, and a resync's
database work before and after batching.

    .venv/bin/python bench/catch_up.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/catch_up.py --database sqlite --sockets 10000 --sweeps 20

Production mode (``DEBUG=0``). One process, the real code paths, on the stream's own
database thread: S conversations (one socket each) in a fresh database (a SQLite file in a
temporary directory, or a uniquely named PostgreSQL database on ``--postgres``, dropped at
the end).

* *Sweep*: S registered sockets (stand-ins with a cursor: the sweep only asks each one
  ``behind(watermark)``), ``CatchUp.sweep()`` timed ``--sweeps`` times with nothing moved
  (the steady state), then once with 1 % of the conversations moved. Reported: wall time
  per sweep, the process's CPU time per sweep (all threads), its statements, and the time
  the watermark read took on the database thread (statement, fetch, conversion).
* *Resync*: what one resync pass makes the database do, with 1 % moved. Before batching,
  each socket read from its cursor (``stream_page`` through ``SharedReads``, as
  ``webchat_resync`` did); after, one sweep, then a read for each socket woken. Reported:
  queries, wall and CPU time.
"""

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Socket:
    """A registered socket as the sweep sees it."""

    def __init__(self, tenant_id, conversation_id, cursor):
        self.tenant_id, self.conversation_id, self.cursor = tenant_id, conversation_id, cursor

    def behind(self, watermark):
        return watermark > self.cursor


class QueryMeter:
    """Counts the statements of one connection (an execute wrapper), and times the sweep's
    watermark read on the database thread (statement, rows fetched and converted)."""

    def __init__(self):
        self.count, self.seconds = 0, 0.0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)

    def timed(self, function):
        def timed(*args):
            started = time.perf_counter()
            try:
                return function(*args)
            finally:
                self.seconds += time.perf_counter() - started
        return timed


def setup_django(database_url):
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # Production mode (DEBUG=0: no per-query debug cursor), throwaway keys, as bench/load.py.
    os.environ.update({"DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                       "WEBCHAT_TOKEN_SIGNING_KEY": secrets.token_urlsafe(32),
                       "ALLOWED_HOSTS": "127.0.0.1", "CORS_ALLOWED_ORIGINS": "http://127.0.0.1"})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(count, activities):
    """``count`` conversations of one tenant, each with ``activities`` activities."""
    from webchat.models import Activity, Conversation, Tenant

    tenant = Tenant.objects.create(name=f"bench-{uuid.uuid4().hex[:8]}")
    conversations = Conversation.objects.bulk_create(
        [Conversation(tenant=tenant, watermark=activities) for _ in range(count)],
        batch_size=2000,
    )
    Activity.objects.bulk_create(
        [Activity(conversation=c, sequence=n, data={"type": "message", "text": f"m{n}"})
         for c in conversations for n in range(1, activities + 1)], batch_size=2000,
    )
    return str(tenant.pk), [c.pk for c in conversations]


def move(conversation_ids):
    """One more activity in each conversation (no notification)."""
    from webchat.models import Conversation
    from webchat.transcript import append_activity

    for cid in conversation_ids:
        append_activity(Conversation.objects.get(pk=cid), {"type": "message", "text": "new"})


async def measure(sockets_count, sweeps):
    from django.db import connection

    from webchat import catch_up as catch_up_module
    from webchat.catch_up import CatchUp
    from webchat.conf import settings
    from webchat.pages import stream_page
    from webchat.stream_reads import shared_reads, stream_db

    tenant_id, ids = await stream_db(seed, sockets_count, 1)
    meter = QueryMeter()
    await stream_db(lambda: connection.execute_wrappers.append(meter))
    catch_up_module.watermarks = meter.timed(catch_up_module.watermarks)
    catch_up = CatchUp(interval=lambda: 3600)
    sockets = [Socket(tenant_id, cid, 1) for cid in ids]
    catch_up._sockets = {(s.tenant_id, s.conversation_id): {s} for s in sockets}

    def run_sweeps(n):
        async def go():
            wall, cpu, queries, query_s = [], [], meter.count, meter.seconds
            for _ in range(n):
                started, started_cpu = time.perf_counter(), time.process_time()
                woken = await catch_up.sweep()
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
            return {"wall": sorted(wall)[len(wall) // 2], "cpu": sorted(cpu)[len(cpu) // 2],
                    "queries": (meter.count - queries) / n,
                    "query_s": (meter.seconds - query_s) / n, "woken": woken}
        return go()

    await run_sweeps(2)  # warm the connection and the caches
    steady = await run_sweeps(sweeps)
    moved = ids[:: 100]
    await stream_db(move, moved)
    one_percent = await run_sweeps(5)  # the stand-ins stay behind: each sweep wakes them

    budget = (settings.max_replay, settings.max_poll_bytes, settings.max_frame_bytes, None)

    async def read_all(targets):
        await asyncio.gather(*(shared_reads.read(stream_page, s.conversation_id, s.cursor,
                                                 *budget) for s in targets))

    async def timed(work):
        queries = meter.count
        started, started_cpu = time.perf_counter(), time.process_time()
        await work()
        return {"queries": meter.count - queries, "wall": time.perf_counter() - started,
                "cpu": time.process_time() - started_cpu}

    before = await timed(lambda: read_all(sockets))  # a read per socket

    async def batched():
        await catch_up.sweep()
        await read_all([s for s in sockets if s.conversation_id in set(moved)])

    after = await timed(batched)
    return {"steady": steady, "one_percent": one_percent, "moved": len(moved),
            "before": before, "after": after}


def report(database, sockets_count, result):
    ms = 1000
    s, o, b, a = result["steady"], result["one_percent"], result["before"], result["after"]
    print(f"{database}, {sockets_count:,} sockets (one per conversation):")
    print(f"  sweep, nothing moved: {s['wall'] * ms:.1f} ms wall, {s['cpu'] * ms:.1f} ms CPU, "
          f"{s['queries']:.0f} query, {s['query_s'] * ms:.1f} ms reading it (medians; mean)")
    print(f"  sweep, {result['moved']} moved: {o['wall'] * ms:.1f} ms wall, "
          f"{o['cpu'] * ms:.1f} ms CPU, {o['woken']} woken")
    print(f"  resync, {result['moved']} moved: before {b['queries']} queries, "
          f"{b['wall'] * ms:.0f} ms wall, {b['cpu'] * ms:.0f} ms CPU; after {a['queries']} "
          f"queries, {a['wall'] * ms:.0f} ms wall, {a['cpu'] * ms:.0f} ms CPU")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    if args.database is None:  # each database in its own process: Django sets up once
        for database in ("sqlite", "postgres"):
            os.spawnv(os.P_WAIT, sys.executable, [sys.executable, __file__, "--database",
                      database, "--sockets", str(args.sockets), "--sweeps", str(args.sweeps),
                      "--postgres", args.postgres])
        return
    with tempfile.TemporaryDirectory() as directory:
        name = None
        if args.database == "postgres":
            import psycopg

            name = f"webchat_bench_catch_up_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            url = f"{args.postgres}/{name}"
        else:
            url = f"sqlite:///{directory}/bench.sqlite3"
        try:
            setup_django(url)
            result = asyncio.run(measure(args.sockets, args.sweeps))
            report(args.database, args.sockets, result)
        finally:
            from webchat.stream_reads import stream_threads

            stream_threads.close()
            if name:
                with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
