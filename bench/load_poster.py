"""The poster for ``bench/load.py``: activities through the bot API of both replicas.

Started by the harness, one process per phase (never in the clients' processes)::

    python bench/load_poster.py --config targets.json --phase m --rate 200 --duration 20 \\
        --out result.json

``targets.json`` is ``{"ports": [...], "targets": [[conversation id, tenant secret], ...]}``.
Post ``i`` goes to replica ``i % len(ports)`` and conversation ``i % len(targets)``, as
``POST /v3/directline/bot/conversations/{id}/activities`` with the tenant's secret, over
keep-alive HTTP/1.1 connections (``--connections`` per replica). Each body carries
``channelData`` ``{"t": CLOCK_MONOTONIC ns just before the request is written, "p": phase,
"r": replica}`` for the clients to time it.

``--rate R`` is open-loop: post ``i`` is due at ``start + i / R`` whatever the answers; when
every connection of its replica is busy it waits, and the lag is reported (``behind_ms``).
``--rate 0`` posts as fast as the connections allow (the throughput phase).
"""

import argparse
import asyncio
import json
import time
from collections import Counter


class Connection:
    """One keep-alive HTTP/1.1 connection to a replica (the minimum a JSON POST needs)."""

    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None

    async def post(self, path, secret, body):
        """Send one POST; return ``(status, monotonic ns when written)``."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            self.writer = None
            raise ConnectionError("the replica closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            while size := int((await self.reader.readline()).strip() or b"0", 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        elif length:
            await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None
        return status


class Poster:
    def __init__(self, ports, targets, phase, connections):
        self.ports = ports
        self.targets = targets
        self.phase = phase
        self.pools = [asyncio.Queue() for _ in ports]
        for pool, port in zip(self.pools, ports, strict=True):
            for _ in range(connections):
                pool.put_nowait(Connection(port))
        self.statuses = Counter()
        self.per_conversation = Counter()
        self.http_us = []
        self.first_ns = self.last_ns = None

    async def post(self, i, connection):
        replica = i % len(self.ports)
        conversation, secret = self.targets[i % len(self.targets)]
        sent = time.monotonic_ns()
        body = json.dumps({
            "type": "message",
            "text": f"load {self.phase} {i}",
            "channelData": {"t": sent, "p": self.phase, "r": replica},
        }).encode()  # fmt: skip
        try:
            status = await connection.post(
                f"/v3/directline/bot/conversations/{conversation}/activities", secret, body
            )
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            connection.writer = None
            self.statuses[type(exc).__name__] += 1
            return
        done = time.monotonic_ns()
        self.statuses[str(status)] += 1
        if status == 200:
            self.per_conversation[conversation] += 1
            self.http_us.append((done - sent) // 1000)
            self.first_ns = sent if self.first_ns is None else min(self.first_ns, sent)
            self.last_ns = done if self.last_ns is None else max(self.last_ns, done)

    async def paced(self, rate, count):
        """Open loop: post ``i`` is due at ``start + i / rate``."""
        loop = asyncio.get_running_loop()
        tasks = set()
        behind = 0.0
        start = loop.time() + 0.05
        for i in range(count):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pool = self.pools[i % len(self.ports)]
            connection = await pool.get()
            behind = max(behind, loop.time() - (start + i / rate))
            task = asyncio.create_task(self._post_and_release(i, connection, pool))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        return behind

    async def _post_and_release(self, i, connection, pool):
        try:
            await self.post(i, connection)
        finally:
            pool.put_nowait(connection)

    async def burst(self, seconds):
        """Closed loop: every connection posts again as soon as it has its answer."""
        end = time.monotonic() + seconds
        counter = iter(range(10**9))

        async def worker(replica, connection):
            while time.monotonic() < end:
                i = next(counter)
                # Keep post i on replica i % n, as the paced phase does.
                i = i - i % len(self.ports) + replica
                await self.post(i, connection)

        workers = []
        for replica, pool in enumerate(self.pools):
            while not pool.empty():
                workers.append(worker(replica, pool.get_nowait()))
        await asyncio.gather(*workers)
        return 0.0


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args):
    with open(args.config) as handle:
        config = json.load(handle)
    poster = Poster(config["ports"], config["targets"], args.phase, args.connections)
    started = time.monotonic()
    if args.rate > 0:
        behind = await poster.paced(args.rate, int(args.rate * args.duration))
    else:
        behind = await poster.burst(args.duration)
    seconds = time.monotonic() - started
    ok = sum(poster.per_conversation.values())
    result = {
        "phase": args.phase,
        "ok": ok,
        "statuses": dict(poster.statuses),
        "seconds": seconds,
        "rate": ok / seconds if seconds else 0.0,
        "behind_ms": round(behind * 1000, 1),
        "http_ms": {
            "p50": (percentile(poster.http_us, 0.50) or 0) / 1000,
            "p99": (percentile(poster.http_us, 0.99) or 0) / 1000,
        },
        "first_ns": poster.first_ns,
        "last_ns": poster.last_ns,
        "per_conversation": dict(poster.per_conversation),
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="targets JSON (see the docstring)")
    parser.add_argument("--phase", required=True, help="a tag carried in channelData.p")
    parser.add_argument("--rate", type=float, required=True, help="posts/s; 0: as fast as possible")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--connections", type=int, default=8, help="connections per replica")
    parser.add_argument("--out", required=True, help="write the result JSON here")
    asyncio.run(main(parser.parse_args()))
