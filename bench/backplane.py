"""Cross-process notification throughput and latency: this backplane against the alternatives.

    .venv/bin/python bench/backplane.py                      # print the table
    .venv/bin/python bench/backplane.py --write docs/benchmarks.md

Starts a private redis-server on a free port (stopped by pid at the end). For each contender
and each number of local groups G, two processes run: a subscriber that holds G groups with
one consumer each (a task waiting in ``receive``, as a WebSocket consumer does) and a
publisher that sends notifications round-robin over the G conversations, carrying its
CLOCK_MONOTONIC send time in ``new_watermark`` so the consumer can time each one. Phases:
warm-up (300 at 1,000/s), burst (as fast as the contender takes them: throughput), paced
(at 1,000/s: latency p50/p99). Contenders:

* ``backplane``: ``RedisNotifier.apublish`` in the publisher; its listener delivering through
  ``LocalChannelLayer`` in the subscriber (wire v1 decode, self-echo/version checks, group send).
* ``raw``: redis-py pub/sub with the same wire v1 payloads, published in pipelines of 256 (like
  the notifier's sender) and read with ``PubSub.listen()`` + ``json.loads`` + a dict of G
  handlers: the transport's ceiling, with no validation and no channel layer.
* ``raw_fanout``: ``raw`` plus what any delivery to consumers adds: each handler puts the
  watermark on its consumer's ``asyncio.Queue`` (capacity 100), read by that consumer's task.
* ``redis_layer`` / ``pubsub_layer``: channels_redis ``RedisChannelLayer`` /
  ``RedisPubSubChannelLayer`` ``group_send`` (64 concurrent callers in the burst), each
  consumer awaiting the layer's ``receive``. RedisChannelLayer gets a capacity of a million:
  its default 100 counts per process, so a burst would mostly measure drops.

Also times ``group_send`` of LocalChannelLayer against channels' InMemoryChannelLayer in one
process with 1,000 groups, each member waiting in ``receive``.
"""

import argparse
import asyncio
import cProfile
import json
import os
import platform
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from channels.layers import InMemoryChannelLayer  # noqa: E402
from channels_redis.core import RedisChannelLayer  # noqa: E402
from channels_redis.pubsub import RedisPubSubChannelLayer  # noqa: E402

from notifier import wire  # noqa: E402
from notifier.backends.redis import RedisNotifier  # noqa: E402
from notifier.events import NotifyEvent, group_name, watermark_message  # noqa: E402
from notifier.layers import LocalChannelLayer  # noqa: E402

CONTENDERS = ("backplane", "raw", "raw_fanout", "redis_layer", "pubsub_layer")
REDIS_LAYER_CAPACITY = 1_000_000
TENANT = "bench"
WARM, WARM_RATE = 300, 1000
# docs/benchmarks.md is shared with other harnesses (bench/load.py): only the text between
# these markers is ours to rewrite; everything around them (notes, other sections) stays.
BEGIN_MARKER = "<!-- bench/backplane.py: begin -->"
END_MARKER = "<!-- bench/backplane.py: end -->"
CONCURRENCY = 64
BATCH = 256


def conversation(i, groups):
    return f"conv-{i % groups}"


def event(i, groups):
    return NotifyEvent(TENANT, conversation(i, groups), time.monotonic_ns())


# The publisher process


async def paced(send, count, rate, groups, offset):
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(event(offset + i, groups))


async def concurrently(send, count, groups, offset):
    cursor = iter(range(offset, offset + count))

    async def worker():
        for i in cursor:
            await send(event(i, groups))

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def publish(args):
    instance = uuid.uuid4()
    if args.contender == "backplane":
        notifier = RedisNotifier(
            args.url,
            channel=args.channel,
            capacity=4 * args.burst,
            channel_layer=LocalChannelLayer(),
        )
        await notifier.astart()
        send = notifier.apublish

        async def burst(count, offset):
            for n in range(0, count, BATCH):
                for i in range(offset + n, offset + min(n + BATCH, count)):
                    await notifier.apublish(event(i, args.groups))
                await asyncio.sleep(0)  # as request handlers do between publishes

        close = notifier.aclose
    elif args.contender in ("raw", "raw_fanout"):
        client = aioredis.Redis.from_url(args.url)

        async def send(notification):
            await client.publish(args.channel, wire.encode(notification, instance))

        async def burst(count, offset):
            for n in range(0, count, BATCH):
                async with client.pipeline(transaction=False) as pipe:
                    for i in range(offset + n, offset + min(n + BATCH, count)):
                        pipe.publish(args.channel, wire.encode(event(i, args.groups), instance))
                    await pipe.execute()

        close = client.aclose
    else:
        layer_class = (
            RedisChannelLayer if args.contender == "redis_layer" else RedisPubSubChannelLayer
        )
        options = {"capacity": REDIS_LAYER_CAPACITY} if args.contender == "redis_layer" else {}
        layer = layer_class(hosts=[args.url], prefix=args.channel, **options)

        async def send(notification):
            group = group_name(notification.tenant_id, notification.conversation_id)
            await layer.group_send(group, watermark_message(notification))

        async def burst(count, offset):
            await concurrently(send, count, args.groups, offset)

        async def close():
            if args.contender == "pubsub_layer":
                await layer.flush()
            else:
                await layer.close_pools()

    phases = {}
    if args.phase == "burst":
        await paced(send, WARM, WARM_RATE, args.groups, 0)
        await asyncio.sleep(0.5)
        cpu = time.process_time()
        phases["burst_start"] = time.monotonic_ns()
        await burst(args.burst, WARM)
        phases["burst_end"] = time.monotonic_ns()
        await close()  # the backplane's sender flushes what is still queued
        phases["publisher_cpu_us"] = (time.process_time() - cpu) / args.burst * 1e6
    else:
        phases["paced_start"] = time.monotonic_ns()
        await paced(send, args.paced, args.rate, args.groups, WARM + args.burst)
        phases["paced_end"] = time.monotonic_ns()
        await close()
    if args.contender == "backplane":
        phases["publisher_counters"] = notifier.stats()
    print(json.dumps(phases), flush=True)


# The subscriber process


async def subscribe(args):
    sent, received, cpu = [], [], {}

    def record(watermark):
        received.append(time.monotonic_ns())
        sent.append(watermark)
        # CPU seconds this process spent on the burst: unlike wall-clock throughput, barely
        # moved by whatever else runs on the machine.
        if len(received) == WARM:
            cpu["start"] = time.process_time()
            if args.profiler:
                args.profiler.enable()
        elif len(received) == WARM + args.burst:
            cpu["end"] = time.process_time()
            if args.profiler:
                args.profiler.disable()
        # The paced phase too, from its first notification to its last: at 1,000/s each one
        # is read on its own and wakes its consumer, whatever the number of groups.
        elif len(received) == WARM + args.burst + 1:
            cpu["paced_start"] = time.process_time()
        elif len(received) == WARM + args.burst + args.paced:
            cpu["paced_end"] = time.process_time()

    async def consume(layer, channel):
        while True:
            message = await layer.receive(channel)
            # Anything else the backplane may tell consumers is not what is being timed.
            if message.get("type") == "webchat.watermark":
                record(message["watermark"])

    async def consume_queue(queue):
        while True:
            record(await queue.get())

    tasks, stats = [], {}
    if args.contender in ("raw", "raw_fanout"):
        client = aioredis.Redis.from_url(args.url)
        pubsub = client.pubsub()
        await pubsub.subscribe(args.channel)
        handlers = {}
        for k in range(args.groups):
            if args.contender == "raw":
                handler = record
            else:
                queue = asyncio.Queue(maxsize=100)
                handler = queue.put_nowait
                tasks.append(asyncio.create_task(consume_queue(queue)))
            handlers[TENANT, conversation(k, args.groups)] = handler

        async def read():
            async for message in pubsub.listen():
                if message["type"] == "message":
                    fields = json.loads(message["data"])
                    handlers[fields["tenant_id"], fields["conversation_id"]](
                        fields["new_watermark"]
                    )

        tasks.append(asyncio.create_task(read()))
    else:
        if args.contender == "backplane":
            layer = LocalChannelLayer()
            notifier = RedisNotifier(args.url, channel=args.channel, channel_layer=layer)
            listener = notifier.listener()
        elif args.contender == "redis_layer":
            layer = RedisChannelLayer(
                hosts=[args.url], prefix=args.channel, capacity=REDIS_LAYER_CAPACITY
            )
        else:
            layer = RedisPubSubChannelLayer(hosts=[args.url], prefix=args.channel)
        for k in range(args.groups):
            channel = await layer.new_channel()
            await layer.group_add(group_name(TENANT, conversation(k, args.groups)), channel)
            tasks.append(asyncio.create_task(consume(layer, channel)))
        if args.contender == "backplane":
            tasks.append(listener.start())
            await listener.wait_connected(5)
            # After subscribing, the listener may resync every local group, spread over a few
            # seconds (notifier.resync): a one-off, so measure after it, in the steady state.
            resyncer = getattr(listener, "resyncer", None)
            for _ in range(600):
                last = getattr(resyncer, "last", None) or {}
                if resyncer is None or last.get("done") or not last.get("groups", 1):
                    break
                await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # every consumer is waiting in receive() now
    print("READY", flush=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def command(line):
        if line.strip() == "COUNT":
            print(len(received), flush=True)
        else:
            stop.set()

    loop.add_reader(sys.stdin.fileno(), lambda: command(sys.stdin.readline()))
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    if args.contender == "backplane":
        stats = {"listener": listener.stats(), "layer": layer.stats()}
        await listener.aclose()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if "end" in cpu:
        stats["subscriber_cpu_us"] = (cpu["end"] - cpu["start"]) / args.burst * 1e6
    if "paced_end" in cpu:
        stats["subscriber_paced_cpu_us"] = (
            (cpu["paced_end"] - cpu["paced_start"]) / (args.paced - 1) * 1e6
        )
    Path(args.out).write_text(json.dumps({"sent": sent, "received": received, "stats": stats}))


# The orchestrator


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis():
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.2).ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"redis-server on port {port} did not answer")


def role_command(args, role, contender, groups, channel, **extra):
    command = [
        sys.executable,
        __file__,
        "--role",
        role,
        "--contender",
        contender,
        "--groups",
        str(groups),
        "--url",
        args.url,
        "--channel",
        channel,
        "--burst",
        str(args.burst),
        "--paced",
        str(args.paced),
        "--rate",
        str(args.rate),
    ]
    if args.profile:
        extra["profile"] = args.profile
    for key, value in extra.items():
        command += [f"--{key}", str(value)]
    return command


def readline(process, timeout):
    """One line of the subprocess's stdout, or SystemExit after ``timeout`` seconds."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise SystemExit(f"no answer from pid {process.pid} within {timeout} s")
    return process.stdout.readline()


def wait_for_count(subscriber, target, stall=5.0):
    """Ask the subscriber how many it has until it reaches ``target`` or stops moving."""
    last, since = -1, time.monotonic()
    while True:
        subscriber.stdin.write("COUNT\n")
        subscriber.stdin.flush()
        count = int(readline(subscriber, 30))
        if count >= target:
            return count
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > stall:
            return count
        time.sleep(0.05)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def run_scenario(args, contender, groups):
    channel = f"bench:{uuid.uuid4().hex[:12]}"
    out = Path(tempfile.mkdtemp()) / "received.json"
    started = time.monotonic()
    subscriber = subprocess.Popen(
        role_command(args, "subscribe", contender, groups, channel, out=out),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if readline(subscriber, 300).strip() != "READY":
            raise SystemExit(f"{contender}: the subscriber failed to start")
        setup = time.monotonic() - started

        def publisher(phase):
            done = subprocess.run(
                role_command(args, "publish", contender, groups, channel, phase=phase),
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            return json.loads(done.stdout.strip().splitlines()[-1])

        phases = publisher("burst")
        wait_for_count(subscriber, WARM + args.burst)
        phases.update(publisher("paced"))
        wait_for_count(subscriber, WARM + args.burst + args.paced)
        subscriber.stdin.write("STOP\n")
        subscriber.stdin.flush()
        subscriber.wait(60)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
    data = json.loads(out.read_text())
    out.unlink()
    out.parent.rmdir()
    pairs = list(zip(data["sent"], data["received"], strict=True))
    burst = [r for s, r in pairs if phases["burst_start"] <= s <= phases["burst_end"]]
    paced_latency = [
        (r - s) / 1e6 for s, r in pairs if phases["paced_start"] <= s <= phases["paced_end"]
    ]
    elapsed = (max(burst) - phases["burst_start"]) / 1e9 if burst else float("nan")
    return {
        "contender": contender,
        "groups": groups,
        "setup_s": setup,
        "throughput": len(burst) / elapsed,
        "burst_lost": args.burst - len(burst),
        "paced_lost": args.paced - len(paced_latency),
        "p50_ms": percentile(paced_latency, 0.50),
        "p99_ms": percentile(paced_latency, 0.99),
        "stats": data["stats"],
        "publisher": phases.get("publisher_counters"),
        "subscriber_cpu_us": data["stats"].pop("subscriber_cpu_us", float("nan")),
        "subscriber_paced_cpu_us": data["stats"].pop("subscriber_paced_cpu_us", float("nan")),
        "publisher_cpu_us": phases["publisher_cpu_us"],
    }


async def layer_group_send(layer, groups, count):
    """group_send ``count`` messages round-robin over ``groups`` one-member groups whose
    consumers wait in receive(); return messages per second, all received."""
    done, received = asyncio.Event(), 0

    async def consume(channel):
        nonlocal received
        while True:
            await layer.receive(channel)
            received += 1
            if received == count:
                done.set()

    tasks = []
    for k in range(groups):
        channel = await layer.new_channel()
        await layer.group_add(f"group.{k}", channel)
        tasks.append(asyncio.create_task(consume(channel)))
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    for i in range(count):
        await layer.group_send(f"group.{i % groups}", {"type": "webchat.watermark", "n": i})
        if i % 100 == 99:
            await asyncio.sleep(0)  # let consumers run, as an event loop serving them would
    await asyncio.wait_for(done.wait(), 600)
    rate = count / (time.perf_counter() - started)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return rate


def machine():
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python "
        f"{platform.python_version()}, {server.stdout.split()[2]}"
    )


def orchestrate(args):
    args.load_start = os.getloadavg()[0]
    redis_process, args.url = start_redis()
    print(f"private redis-server pid {redis_process.pid} at {args.url}", flush=True)
    results, layer_rates = [], {}
    try:
        for name, layer in (
            ("LocalChannelLayer", LocalChannelLayer()),
            ("InMemoryChannelLayer", InMemoryChannelLayer()),
        ):
            count = args.layer_sends if name == "LocalChannelLayer" else args.layer_sends // 4
            layer_rates[name] = asyncio.run(layer_group_send(layer, 1000, count))
            print(f"{name}: group_send with 1,000 groups: {layer_rates[name]:,.0f}/s", flush=True)
        # Rounds interleave the contenders, so that load from elsewhere on the machine hits
        # them alike; the table shows each one's median round.
        runs = {}
        for round_number in range(1, args.repeat + 1):
            for groups in args.groups_list:
                for contender in args.contenders:
                    result = run_scenario(args, contender, groups)
                    runs.setdefault((contender, groups), []).append(result)
                    print(
                        f"round {round_number}/{args.repeat} {contender:>12} G={groups:>6}: "
                        f"{result['throughput']:>9,.0f}/s  "
                        f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  CPU "
                        f"sub {result['subscriber_cpu_us']:.1f} pub "
                        f"{result['publisher_cpu_us']:.1f} µs, paced sub "
                        f"{result['subscriber_paced_cpu_us']:.1f} µs  lost "
                        f"{result['burst_lost']}+{result['paced_lost']}  (setup "
                        f"{result['setup_s']:.1f} s) {json.dumps(result['stats'])}",
                        flush=True,
                    )
        for groups in args.groups_list:
            for contender in args.contenders:
                rounds = sorted(runs[contender, groups], key=lambda r: r["throughput"])
                median = dict(rounds[len(rounds) // 2])
                median["rounds"] = [r["throughput"] for r in runs[contender, groups]]
                for cost in ("subscriber_cpu_us", "publisher_cpu_us", "subscriber_paced_cpu_us"):
                    median[cost] = statistics.median(r[cost] for r in runs[contender, groups])
                results.append(median)
    finally:
        redis_process.terminate()
        redis_process.wait(10)
    report = render(args, results, layer_rates)
    print(report)
    if args.write:
        write_block(Path(args.write), report)
        print(f"written to {args.write}")


def write_block(path, report, begin=BEGIN_MARKER, end=END_MARKER, title="# Benchmarks\n"):
    """Put ``report`` between the markers in ``path``, leaving the rest of the file alone
    (bench/replicas.py passes its own markers)."""
    block = f"{begin}\n{report.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else title
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def capacity(result):
    """Notifications/s one free core per process could carry: the busier side's CPU cost.

    Unlike wall-clock throughput this hardly moves with other load on a shared machine.
    """
    return 1e6 / max(result["subscriber_cpu_us"], result["publisher_cpu_us"])


def best(result):
    return max(result["rounds"])


def ratio(result, baseline, measure, digits=2):
    if baseline is None:
        return "-"
    return f"{measure(result) / measure(baseline):.{digits}f}x"


def render(args, results, layer_rates):
    by = {(r["contender"], r["groups"]): r for r in results}
    lines = [
        "| contender | groups | capacity/s | vs raw | vs RedisChannelLayer "
        "| CPU µs/notification: subscriber, publisher | subscriber CPU µs, paced "
        "| best round/s (vs raw) | median round/s | p50 ms | p99 ms | lost |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        raw, core = by.get(("raw", r["groups"])), by.get(("redis_layer", r["groups"]))
        lines.append(
            f"| {r['contender']} | {r['groups']:,} | {capacity(r):,.0f} "
            f"| {ratio(r, raw, capacity)} | {ratio(r, core, capacity, 1)} "
            f"| {r['subscriber_cpu_us']:.1f}, {r['publisher_cpu_us']:.1f} "
            f"| {r['subscriber_paced_cpu_us']:.1f} "
            f"| {best(r):,.0f} ({ratio(r, raw, best)}) | {r['throughput']:,.0f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['burst_lost'] + r['paced_lost']} |"
        )
    text = [
        "## Backplane: cross-process notifications (`bench/backplane.py`)",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. Load average (1 min) "
        f"at the start {args.load_start:.2f}, at the end {os.getloadavg()[0]:.2f} (the "
        f"machine is shared). {args.repeat} interleaved rounds per row.",
        "Command, from the repository root:\n\n    .venv/bin/python "
        + " ".join(["bench/backplane.py", *sys.argv[1:]]),
        f"A burst of {args.burst:,} notifications measures throughput (first publish to last "
        f"delivery) and the CPU time each process spends per notification; then {args.paced:,} "
        f"paced at {args.rate:,}/s measure latency (publish call to the consumer's receive) "
        "and the subscriber's CPU per notification when each is read alone and wakes its "
        "consumer (in a burst, one socket read brings hundreds, and with few groups a woken "
        "consumer often finds several queued). "
        "Publisher and subscriber are separate processes on one private redis-server; the "
        "script's docstring says what each contender does. *Capacity* = 10^6 / the larger of "
        "the two CPU costs (median of rounds): the rate one free core per process carries, "
        "the steadiest figure on a shared machine, and the one the ratios use. Wall-clock "
        "rounds follow whatever else the machine runs; the best round is the least disturbed.",
        "\n".join(lines),
    ]
    ours = [by.get(("backplane", g)) for g in args.groups_list]
    if len(ours) >= 2 and all(ours):
        text.append(
            f"Backplane with {args.groups_list[-1]:,} groups against {args.groups_list[0]:,}: "
            f"capacity {ratio(ours[-1], ours[0], capacity)}, best round "
            f"{ratio(ours[-1], ours[0], best)}, subscriber CPU per paced notification "
            f"{ours[-1]['subscriber_paced_cpu_us']:.1f} against "
            f"{ours[0]['subscriber_paced_cpu_us']:.1f} µs."
        )
    local, memory = layer_rates.get("LocalChannelLayer"), layer_rates.get("InMemoryChannelLayer")
    if local and memory:
        text.append(
            "In-process `group_send` with 1,000 one-member groups, consumers waiting in "
            f"`receive`: LocalChannelLayer {local:,.0f}/s, InMemoryChannelLayer {memory:,.0f}/s "
            f"({local / memory:.0f}x)."
        )
    return "\n\n".join(text) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--groups",
        dest="groups_list",
        type=int,
        nargs="+",
        default=[100, 10_000],
        help="numbers of local groups in the subscriber",
    )
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=CONTENDERS,
        default=list(CONTENDERS),
        help="what to measure",
    )
    parser.add_argument("--burst", type=int, default=20_000, help="notifications in the burst")
    parser.add_argument("--paced", type=int, default=2_000, help="notifications paced for latency")
    parser.add_argument("--rate", type=int, default=1_000, help="paced notifications per second")
    parser.add_argument(
        "--layer-sends",
        type=int,
        default=20_000,
        help="group_sends for the in-process layer comparison",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--write", metavar="PATH", help="also write the markdown report there")
    # Internal: the orchestrator runs this script again in these roles.
    parser.add_argument("--role", choices=("publish", "subscribe"), help=argparse.SUPPRESS)
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--channel", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("burst", "paced"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="write a cProfile of every publisher and subscriber process there",
    )
    args = parser.parse_args()
    if args.role is None:
        orchestrate(args)
        return
    args.groups = args.groups_list[0]
    args.profiler = cProfile.Profile() if args.profile else None
    if args.role == "publish":
        if args.profiler:
            args.profiler.runcall(asyncio.run, publish(args))
        else:
            asyncio.run(publish(args))
    else:
        asyncio.run(subscribe(args))  # profiles the burst only (see record())
    if args.profiler:
        name = f"{args.role}-{args.contender}-{args.groups}-{args.phase or 'burst'}.prof"
        args.profiler.dump_stats(Path(args.profile) / name)


if __name__ == "__main__":
    main()
