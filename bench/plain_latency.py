"""Plain POST-to-frame latency: one process, one clock, three designs, interleaved rounds.

    .venv/bin/python bench/plain_latency.py                      # 1,000 sockets/replica, 3 rounds
    .venv/bin/python bench/plain_latency.py --sockets 2000 --rounds 5

The small twin of ``bench/load.py``, kept plain on purpose so that it can be read in five
minutes and trusted: no helper processes, no tuning. For each round and each design (in turn,
so a busy spell on the shared machine hits every design alike) it

1. starts two daphne replicas in production mode (``DEBUG=0``) on one SQLite file, with a
   private redis-server (``tests/support``: ``Cluster``, ``RedisServer``);
2. creates tenants (``manage.py create_tenant``, 500 conversations each: a tenant may have
   1,000 sockets per replica) and ``--sockets`` conversations through the Direct Line API;
3. opens one stream socket per conversation on EACH replica (``--sockets`` per replica),
   50 per loopback source address (the stream allows 100 per client address);
4. checks every socket works: one activity per conversation, every socket should see it
   (sockets that do not are printed; this also waits out what connecting left to do);
5. posts ``--rate`` activities/s for ``--duration`` s through the bot API, round-robin over
   the replicas and the conversations, on keep-alive connections (a new one whenever all
   are busy), open loop;
6. times each frame from just before its POST was written to its arrival, both with
   ``time.perf_counter_ns()`` in this process (one clock: no cross-process clock question).

This process is the only client: when it cannot get the CPU it needs (a busy shared machine)
its own lag is in every figure. It prints how late its POSTs left (p99, against their due
times): more than a few milliseconds means the figures measure the harness, not the replicas.

Designs: ``backplane`` = Redis notifier + process-local layer; ``redis-pubsub`` /
``redis-core`` = memory notifier + channels_redis ``RedisPubSubChannelLayer`` /
``RedisChannelLayer`` (``CHANNEL_LAYER`` in webchat/settings.py). Printed per design: p50,
p99 and max over every frame of every round, each round's own p99, frames that never came,
with the load average and the CPU of the replicas and of this process while posting.
"""

import argparse
import asyncio
import json
import os
import resource
import secrets
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.replicas import Cluster  # noqa: E402

DESIGNS = {
    "backplane": {"WEBCHAT_NOTIFIER_BACKEND": "redis", "CHANNEL_LAYER": "local"},
    "redis-pubsub": {"WEBCHAT_NOTIFIER_BACKEND": "memory", "CHANNEL_LAYER": "redis-pubsub"},
    # Its default capacity (100 messages per channel) would measure drops, not delivery.
    "redis-core": {"WEBCHAT_NOTIFIER_BACKEND": "memory", "CHANNEL_LAYER": "redis-core",
                   "CHANNEL_CAPACITY": "10000"},
}  # fmt: skip
PER_TENANT = 500
TICKS = os.sysconf("SC_CLK_TCK")


def production_env():
    """Production mode with throwaway keys; the in-process bot off (one POST, one frame)."""
    return {
        "DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "WEBCHAT_TOKEN_SIGNING_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CORS_ALLOWED_ORIGINS": "http://127.0.0.1",
        "WEBCHAT_BOT": "",
        "LOG_LEVEL": "WARNING",
    }


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def loadavg():
    return Path("/proc/loadavg").read_text().split()[0]


async def http(port, method, path, secret, body=None, idle=None):
    """One request; return (status, JSON body or None). ``idle``: a list of this port's
    keep-alive connections to take one from and give it back to (else a new one)."""
    if idle:
        reader, writer = idle.pop()
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode() if body is not None else b""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    writer.write(head.encode() + data)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    payload = await reader.readexactly(length)
    if idle is None:
        writer.close()
    else:
        idle.append((reader, writer))
    return status, (json.loads(payload) if payload.strip() else None)


class Round:
    """One design's cluster, sockets and frames for one round."""

    def __init__(self, cluster, args):
        self.cluster, self.args = cluster, args
        self.ports = [replica.port for replica in cluster.replicas]
        self.sent = {}  # activity text -> perf_counter_ns just before its POST was written
        self.latencies_us = []
        self.seen = {}  # activity text -> frames received
        self.failed_posts = 0
        self.idle = [[] for _ in self.ports]  # keep-alive connections to each replica

    async def create_conversations(self):
        tenants = [self.cluster.create_tenant() for _ in range(-(-self.args.sockets // PER_TENANT))]
        gate = asyncio.Semaphore(16)

        async def start(i):
            async with gate:
                secret = tenants[i // PER_TENANT]
                status, body = await http(self.ports[i % 2], "POST", "/v3/directline/conversations",
                                          secret)  # fmt: skip
                if status != 201:
                    raise RuntimeError(f"starting a conversation answered {status}: {body}")
                return body["conversationId"], body["token"], secret

        self.conversations = await asyncio.gather(*(start(i) for i in range(self.args.sockets)))

    async def open_sockets(self):
        gate = asyncio.Semaphore(32)
        self.sockets, self.readers = [], set()

        async def one(port, number, conversation, token):
            url = f"ws://127.0.0.1:{port}/v3/directline/conversations/{conversation}/stream"
            # The stream allows 100 sockets per client address and replica: 50 per loopback
            # address (all of 127.0.0.0/8 is this host).
            address = f"127.2.{number // 50 // 250}.{number // 50 % 250 + 1}"
            for attempt in range(3):  # a busy replica may drop a handshake: try again
                try:
                    async with gate:
                        ws = await connect(f"{url}?watermark=&t={token}", compression=None,
                                           ping_interval=None, open_timeout=120,
                                           local_addr=(address, 0))  # fmt: skip
                    break
                except (OSError, InvalidHandshake):
                    if attempt == 2:
                        raise
            self.sockets.append(ws)
            self.readers.add(asyncio.create_task(self.read(ws)))

        await asyncio.gather(*(one(port, number, conversation, token)
                               for number, (conversation, token, _) in enumerate(self.conversations)
                               for port in self.ports))  # fmt: skip

    async def read(self, ws):
        try:
            async for text in ws:
                now = time.perf_counter_ns()
                for activity in json.loads(text)["activities"]:
                    key = activity.get("text")
                    if key in self.sent:
                        self.seen[key] = self.seen.get(key, 0) + 1
                        if key.startswith("m "):
                            self.latencies_us.append((now - self.sent[key]) // 1000)
        except ConnectionClosed:
            pass  # the round is over (or a replica went away: its frames go missing)

    async def post(self, key, i):
        conversation, _, secret = self.conversations[i % len(self.conversations)]
        path = f"/v3/directline/bot/conversations/{conversation}/activities"
        self.sent[key] = time.perf_counter_ns()
        status, _ = await http(self.ports[i % 2], "POST", path, secret,
                               {"type": "message", "text": key}, self.idle[i % 2])  # fmt: skip
        if status != 200:
            self.failed_posts += 1

    async def wait_for_frames(self, keys, timeout):
        """Wait until every socket has each of ``keys``; return how many frames never came
        (``timeout`` seconds without a new one)."""
        missing, last_change = None, time.monotonic()
        while True:
            now_missing = sum(2 - self.seen.get(key, 0) for key in keys)
            if now_missing != missing:
                missing, last_change = now_missing, time.monotonic()
            if not missing or time.monotonic() - last_change > timeout:
                return missing
            await asyncio.sleep(0.1)

    async def check_every_socket(self):
        keys = [f"check {i}" for i in range(len(self.conversations))]
        for start in range(0, len(keys), 100):
            await asyncio.gather(*(self.post(key, i) for i, key in
                                   enumerate(keys[start:start + 100], start)))  # fmt: skip
        if missing := await self.wait_for_frames(keys, 10):
            print(f"  check: {missing} of {2 * len(keys)} sockets never got their frame")

    async def paced(self):
        """Open loop: POST ``i`` is due at ``start + i / rate``, whatever the answers."""
        count = int(self.args.rate * self.args.duration)
        tasks = []
        self.late_us = []  # how late each POST left: this process's own lag (see main)
        start = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / self.args.rate - time.monotonic()))
            self.late_us.append(int((time.monotonic() - start - i / self.args.rate) * 1e6))
            tasks.append(asyncio.create_task(self.post(f"m {i}", i)))
        await asyncio.gather(*tasks)
        return count

    async def run(self):
        await self.create_conversations()
        await self.open_sockets()
        await self.check_every_socket()
        pids = [replica.process.pid for replica in self.cluster.replicas]
        pids.append(os.getpid())  # this process: its CPU says whether it kept up
        before, started, load_before = [cpu_seconds(p) for p in pids], time.monotonic(), loadavg()
        count = await self.paced()
        seconds = time.monotonic() - started
        cpu = [100 * (cpu_seconds(p) - b) / seconds for p, b in zip(pids, before, strict=True)]
        missing = await self.wait_for_frames([f"m {i}" for i in range(count)], 10)
        for ws in self.sockets:
            ws.transport.abort()  # the replicas stop next; no closing handshakes to wait for
        await asyncio.gather(*self.readers)
        return {"latencies_us": self.latencies_us, "failed_posts": self.failed_posts,
                "missing_frames": missing, "late_p99_ms": percentile_ms(sorted(self.late_us), 0.99),
                "cpu": cpu, "load": f"{load_before} -> {loadavg()}"}  # fmt: skip


def percentile_ms(ordered, q):
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=1000, help="sockets per replica")
    parser.add_argument("--rate", type=float, default=200, help="POSTs per second")
    parser.add_argument("--duration", type=float, default=15, help="seconds of posting")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--json", metavar="PATH", help="also write every latency here")
    args = parser.parse_args()
    designs = args.designs.split(",")
    # Every socket is a file descriptor here and in a replica (which inherits the limit).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {design: [] for design in designs}
    redis_server = RedisServer().start()
    try:
        for number in range(1, args.rounds + 1):
            for design in designs:
                env = {**production_env(), **DESIGNS[design]}
                cluster = Cluster(database="sqlite", redis_url=redis_server.url, extra_env=env)
                try:
                    cluster.start(2)
                    result = asyncio.run(Round(cluster, args).run())
                finally:
                    cluster.stop()
                results[design].append(result)
                ordered = sorted(result["latencies_us"])
                print(f"round {number} {design:13} p50 {percentile_ms(ordered, 0.5):6.1f} ms  "
                      f"p99 {percentile_ms(ordered, 0.99):6.1f} ms  frames {len(ordered)} "
                      f"({result['missing_frames']} missing)  "
                      f"failed POSTs {result['failed_posts']}  CPU replicas "
                      f"{result['cpu'][0]:.0f}/{result['cpu'][1]:.0f} %, harness "
                      f"{result['cpu'][2]:.0f} %  POSTs late p99 {result['late_p99_ms']:.1f} ms  "
                      f"load {result['load']}",
                      flush=True)  # fmt: skip
    finally:
        redis_server.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    print(f"\n{args.sockets} sockets/replica, {args.rate:g} POSTs/s for {args.duration:g} s, "
          f"{args.rounds} interleaved rounds; all frames of all rounds:")  # fmt: skip
    print("| design | p50 (ms) | p99 (ms) | max (ms) | p99 per round (ms) | frames (missing) "
          "| POSTs late p99 per round (ms) |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|---|")
    for design, rounds in results.items():
        ordered = sorted(v for r in rounds for v in r["latencies_us"])
        per_round = ", ".join(f"{percentile_ms(sorted(r['latencies_us']), 0.99):.1f}"
                              for r in rounds)  # fmt: skip
        late = ", ".join(f"{r['late_p99_ms']:.1f}" for r in rounds)
        missing = sum(r["missing_frames"] for r in rounds)
        print(
            f"| {design} | {percentile_ms(ordered, 0.5):.1f} | {percentile_ms(ordered, 0.99):.1f}"
            f" | {ordered[-1] / 1000:.1f} | {per_round} | {len(ordered):,} ({missing}) | {late} |"
        )


if __name__ == "__main__":
    main()
