"""Many replicas: one global channel against per-group and sharded routing, CPU per notification.

    .venv/bin/python bench/replicas.py                          # print the tables
    .venv/bin/python bench/replicas.py --write docs/scaling.md  # and rewrite its block + plot
    .venv/bin/python bench/replicas.py --quick                  # a two-minute smoke run
    .venv/bin/python bench/replicas.py --report-from docs/scaling.json --write docs/scaling.md

Starts a private redis-server on a free port (stopped by pid at the end, through
bench/backplane.py's helpers). For each contender and each number of replicas R, R replica
processes run; each holds the consumers (tasks waiting in ``receive``, as WebSocket
consumers do) of the conversations it serves and publishes its share M/R of the total rate M.

Layout, the same for every contender: G conversations; conversation g has sockets on replicas
g mod R and g+1 mod R (two of R), and replica g mod R publishes its notifications (the post
arrives where the conversation lives). So each notification has one local and one remote
delivery; latency is timed on the remote one (publish call to the remote consumer's
receive), losses count both. Contenders:

* ``global``: the real backplane: ``RedisNotifier.apublish`` (local group send, then PUBLISH
  on one global channel) and its listener delivering through ``LocalChannelLayer``. Every
  replica subscribes the one channel, so each reads and decodes every notification.
* ``sharded``: the same code with K = R channels: conversation g goes to channel g mod K,
  whose two holders (replicas k and k+1, the conversation-affinity a load balancer would
  give) each run one RedisNotifier + listener on it (one instance id per process).
* ``pubsub_layer``: channels_redis ``RedisPubSubChannelLayer``: one Redis channel per group,
  ``group_send`` publishing on it, each holder's consumers in ``group_add``.

Each phase paces every replica at M/R for ``--duration`` seconds (it stops at three times that
if it cannot keep up: the wall clock saturated), and the last one of each set is a burst (each
replica publishes its share of ``--burst`` as fast as it can, so every loop reads batches, as
a saturated one does); it waits for the deliveries, then reads each
replica's CPU time (``process_time``) and Redis's (INFO cpu used_cpu_sys + used_cpu_user)
for the phase and divides them by the notifications sent.
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import backplane  # bench/backplane.py: its redis-server, helpers and django.setup()
import redis
from channels_redis.pubsub import RedisPubSubChannelLayer

from notifier.backends.redis import RedisNotifier
from notifier.events import NotifyEvent, group_name, watermark_message
from notifier.layers import LocalChannelLayer

CONTENDERS = ("global", "sharded", "pubsub_layer")
TENANT = backplane.TENANT
BEGIN_MARKER = "<!-- bench/replicas.py: begin -->"
END_MARKER = "<!-- bench/replicas.py: end -->"
COUNTED = ("given_up", "resent", "superseded", "reconnects")


def conversation(g):
    return f"conv-{g}"


def holders(g, replicas):
    return {g % replicas, (g + 1) % replicas}


# The replica process


async def build(args):
    """Return (layer, send(g), listeners, closers, counters()) for this replica's contender;
    counters() is what the backplane counted itself (cumulative): notifications given up
    (sender queue full, consumer queue full), re-sent after a failed round trip, superseded
    in a re-sent batch, and listener reconnections. channels_redis counts none of these."""
    r, replicas = args.index, args.replicas
    if args.contender == "pubsub_layer":
        layer = RedisPubSubChannelLayer(hosts=[args.url], prefix=args.prefix)

        async def send(g):
            notification = NotifyEvent(TENANT, conversation(g), time.monotonic_ns())
            await layer.group_send(group_name(TENANT, conversation(g)),
                                   watermark_message(notification))

        return layer, send, [], [layer.flush], dict
    layer = LocalChannelLayer()
    instance = uuid.uuid4()
    if args.contender == "global":
        channels = {0: args.prefix}
    else:
        channels = {k: f"{args.prefix}:{k}" for k in sorted({r, (r - 1) % replicas})}
    notifiers = {
        k: RedisNotifier(args.url, channel=channel, channel_layer=layer, instance_id=instance)
        for k, channel in channels.items()
    }
    for notifier in notifiers.values():
        await notifier.astart()
    listeners = [notifier.listener() for notifier in notifiers.values()]
    shard = (lambda g: 0) if args.contender == "global" else (lambda g: g % replicas)

    async def send(g):
        await notifiers[shard(g)].apublish(NotifyEvent(TENANT, conversation(g),
                                                       time.monotonic_ns()))

    def counters():
        def total(name):
            return sum(notifier.stats()[name] for notifier in notifiers.values())

        return {"given_up": total("mirror_dropped") + layer.stats()["dropped_full"],
                "resent": total("mirror_failures"), "superseded": total("mirror_superseded"),
                "reconnects": sum(listener.stats()["disconnects"] for listener in listeners)}

    closers = [listener.aclose for listener in listeners]
    closers += [notifier.aclose for notifier in notifiers.values()]
    return layer, send, listeners, closers, counters


async def replica(args):
    r, replicas = args.index, args.replicas
    counts = {"deliveries": 0, "duplicates": 0}
    latencies = []
    layer, send, listeners, closers, counters = await build(args)

    async def consume(channel, remote):
        last = 0
        while True:
            message = await layer.receive(channel)
            if message.get("type") != "webchat.watermark":
                continue
            # One publisher per conversation, so its watermarks rise: anything else is a
            # repeat (a PUBLISH re-sent after a timeout that Redis had in fact accepted).
            if message["watermark"] <= last:
                counts["duplicates"] += 1
            else:
                last = message["watermark"]
                counts["deliveries"] += 1
                if remote:
                    latencies.append((time.monotonic_ns() - message["watermark"]) // 1000)

    tasks = []
    for g in range(args.groups):
        if r in holders(g, replicas):
            channel = await layer.new_channel()
            await layer.group_add(group_name(TENANT, conversation(g)), channel)
            tasks.append(asyncio.create_task(consume(channel, remote=g % replicas != r)))
    for listener in listeners:
        tasks.append(listener.start())
    for listener in listeners:
        await listener.wait_connected(30)
        # The resync after subscribing (notifier.resync) is a one-off: measure after it.
        for _ in range(1200):
            last = listener.resyncer.last or {}
            if last.get("done") or not last.get("groups", 1):
                break
            await asyncio.sleep(0.05)
    own = [g for g in range(args.groups) if g % replicas == r]
    print("READY", flush=True)

    async def publish(rate, duration):
        """Pace ``rate``/s over our own conversations; stop at 3x ``duration`` if behind."""
        count, sent = round(rate * duration), 0
        start = time.monotonic()
        while sent < count and time.monotonic() - start < 3 * duration:
            due = min(count, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                await send(own[sent % len(own)])
                sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
        return {"sent": sent, "elapsed": time.monotonic() - start}

    async def burst(count):
        """Publish ``count`` as fast as we can, yielding as request handlers would."""
        start = time.monotonic()
        for sent in range(count):
            await send(own[sent % len(own)])
            if sent % 256 == 255:
                await asyncio.sleep(0)
        return {"sent": count, "elapsed": time.monotonic() - start}

    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    cpu, base = time.process_time(), counters()
    while line := (await reader.readline()).decode().split():
        if line[0] == "RESET":  # on every replica before any publishes: nothing is missed
            counts["deliveries"] = counts["duplicates"] = 0
            latencies[:] = []
            cpu, base = time.process_time(), counters()
            print(0, flush=True)
        elif line[0] == "RUN":
            print(json.dumps(await publish(float(line[1]), float(line[2]))), flush=True)
        elif line[0] == "BURST":
            print(json.dumps(await burst(int(line[1]))), flush=True)
        elif line[0] == "COUNT":
            print(counts["deliveries"], flush=True)
        elif line[0] == "REPORT":
            print(json.dumps({
                "cpu_s": time.process_time() - cpu, "deliveries": counts["deliveries"],
                "latencies_us": latencies,
                "duplicates": counts["duplicates"],
                "counters": {k: v - base[k] for k, v in counters().items()},
            }), flush=True)
        else:
            break
    for close in closers:
        await close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# The orchestrator


def redis_cpu(client):
    info = client.info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


def ask(processes, command, timeout):
    for process in processes:
        process.stdin.write(command + "\n")
        process.stdin.flush()
    return [json.loads(backplane.readline(process, timeout)) for process in processes]


def wait_for_deliveries(processes, expected):
    """Poll until ``expected`` deliveries arrived or the count stood still for 5 s;
    return the seconds waited."""
    started, last, since = time.monotonic(), -1, time.monotonic()
    while True:
        delivered = sum(ask(processes, "COUNT", 60))
        if delivered >= expected:
            return time.monotonic() - started
        if delivered != last:
            last, since = delivered, time.monotonic()
        elif time.monotonic() - since > 5:
            return time.monotonic() - started
        time.sleep(0.05)


def run_phase(args, processes, client, contender, replicas, rate):
    """One phase: paced at ``rate``/s in total, or (``rate`` 0) a burst of ``args.burst``."""
    load = os.getloadavg()[0]
    ask(processes, "RESET", 60)
    redis_before = redis_cpu(client)
    command = (f"RUN {rate / replicas} {args.duration}" if rate
               else f"BURST {args.burst // replicas}")
    published = ask(processes, command, 3 * args.duration + 600)
    sent = sum(p["sent"] for p in published)
    elapsed = max(p["elapsed"] for p in published)
    drain = wait_for_deliveries(processes, 2 * sent)
    if not rate:  # throughput: first publish to last delivery
        elapsed, drain = elapsed + drain, 0.0
    redis_us = (redis_cpu(client) - redis_before) / sent * 1e6
    reports = ask(processes, "REPORT", 60)
    latencies = [value for report in reports for value in report["latencies_us"]]
    replica_us = [report["cpu_s"] / sent * 1e6 for report in reports]
    return {
        "contender": contender, "replicas": replicas, "rate": rate, "sent": sent,
        "achieved": sent / elapsed, "drain_s": drain,
        "redis_us": redis_us,
        "replica_us": statistics.mean(replica_us), "replica_max_us": max(replica_us),
        "p50_ms": backplane.percentile(latencies, 0.50) / 1000,
        "p99_ms": backplane.percentile(latencies, 0.99) / 1000,
        "lost": 2 * sent - sum(report["deliveries"] for report in reports),
        "duplicates": sum(report["duplicates"] for report in reports),
        **{name: sum(report["counters"].get(name, 0) for report in reports) for name in COUNTED},
        "load": (load, os.getloadavg()[0]),
    }


def run_set(args, contender, replicas, rates):
    """Start R replicas of ``contender``, run one phase per rate, stop them."""
    prefix = f"bench:replicas:{uuid.uuid4().hex[:12]}"
    command = [sys.executable, __file__, "--role", "replica", "--contender", contender,
               "--url", args.url, "--prefix", prefix, "--replicas", str(replicas),
               "--conversations", str(args.conversations)]
    processes = [
        subprocess.Popen([*command, "--index", str(r)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        for r in range(replicas)
    ]
    client = redis.Redis.from_url(args.url)
    try:
        for process in processes:
            if backplane.readline(process, 600).strip() != "READY":
                raise SystemExit(f"{contender}: replica pid {process.pid} failed to start")
        ask(processes, "RESET", 60)
        warm = ask(processes, f"RUN {min(rates) / replicas} 0.5", 60)  # not recorded
        wait_for_deliveries(processes, 2 * sum(p["sent"] for p in warm))
        results = []
        for rate in [*rates, 0] if args.burst else rates:
            result = run_phase(args, processes, client, contender, replicas, rate)
            results.append(result)
            print(f"{contender:>12} R={replicas:>2} M={rate or 'burst':>6}: achieved "
                  f"{result['achieved']:>8,.0f}/s  Redis {result['redis_us']:6.2f} µs  "
                  f"replica {result['replica_us']:6.2f} (max {result['replica_max_us']:.2f}) "
                  f"µs/notification  p50 {result['p50_ms']:.2f} p99 {result['p99_ms']:.2f} ms  "
                  f"lost {result['lost']} (given up {result['given_up']}, resent "
                  f"{result['resent']}, duplicates {result['duplicates']}, reconnects "
                  f"{result['reconnects']})  drain "
                  f"{result['drain_s']:.1f} s  load {result['load'][0]:.2f}->"
                  f"{result['load'][1]:.2f}", flush=True)
        for process in processes:
            process.stdin.write("STOP\n")
            process.stdin.flush()
        for process in processes:
            process.wait(60)
    finally:
        client.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def orchestrate(args):
    # A TERM runs the finally blocks below, which stop the replicas and redis-server by pid.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(f"stopped by signal {number}"))
    args.load_start = os.getloadavg()
    redis_process, args.url = backplane.start_redis()
    print(f"private redis-server pid {redis_process.pid} at {args.url}; load "
          f"{args.load_start[0]:.2f}", flush=True)
    runs = {}
    try:
        # Rounds interleave contenders (rotated) and rates (reversed every other round), so
        # that other load on the shared machine hits them alike; tables show medians.
        for number in range(args.repeat):
            for replicas in args.replicas_list:
                shift = (number + args.replicas_list.index(replicas)) % len(args.contenders)
                order = args.contenders[shift:] + args.contenders[:shift]
                rates = args.rates if number % 2 == 0 else args.rates[::-1]
                for contender in order:
                    print(f"round {number + 1}/{args.repeat}", flush=True)
                    for result in run_set(args, contender, replicas, rates):
                        runs.setdefault((contender, replicas, result["rate"]), []).append(result)
    finally:
        redis_process.terminate()
        redis_process.wait(10)
    args.load_end = os.getloadavg()
    report(args, runs)


def report(args, runs):
    import scaling_report  # bench/scaling_report.py: medians, model fit, markdown, plot

    text = scaling_report.render(args, runs)
    print(text)
    if args.write:
        backplane.docs_block.write_block(args.write, text, BEGIN_MARKER, END_MARKER,
                               title="# Scaling: many replicas\n")
        print(f"written to {args.write}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", dest="replicas_list", type=int, nargs="+",
                        default=[2, 4, 8, 16], help="numbers of replica processes")
    parser.add_argument("--rates", type=int, nargs="+", default=[1000, 5000, 10_000, 20_000],
                        help="total notifications per second, over all replicas")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS),
                        help="what to measure")
    parser.add_argument("--conversations", type=int, default=10_000,
                        help="conversations G, each with sockets on 2 replicas")
    parser.add_argument("--duration", type=float, default=3.0,
                        help="seconds each phase paces its rate")
    parser.add_argument("--burst", type=int, default=20_000,
                        help="notifications in each set's last phase, published as fast as "
                        "the replicas can (0: none): CPU per notification when reads batch")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the median is reported")
    parser.add_argument("--quick", action="store_true",
                        help="R 2 4, M 1000 5000, 1,000 conversations, 1 s, one round")
    parser.add_argument("--write", metavar="PATH",
                        help="rewrite the generated block there, and a PNG plot beside it")
    parser.add_argument("--report-from", metavar="JSON",
                        help="render (and --write) again from the figures a --write run "
                        "saved beside its report (e.g. docs/scaling.json), measuring nothing")
    # Internal: the orchestrator runs this script again in this role.
    parser.add_argument("--role", choices=("replica",), help=argparse.SUPPRESS)
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "replica":
        args.replicas, args.groups = args.replicas_list[0], args.conversations
        asyncio.run(replica(args))
        return
    if args.report_from:
        import scaling_report

        report(args, scaling_report.load(args, Path(args.report_from)))
        return
    if args.quick:
        args.replicas_list, args.rates, args.conversations = [2, 4], [1000, 5000], 1000
        args.duration, args.repeat, args.burst = 1.0, 1, 4000
    orchestrate(args)


if __name__ == "__main__":
    main()
