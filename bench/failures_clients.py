"""Reconnecting WebSocket clients for ``bench/failures.py``: one asyncio process, many sockets.

Started by the harness (never by hand); one JSON command per stdin line, one JSON answer per
command on stdout (the protocol of ``bench/load_clients.py``):

* ``{"cmd": "connect", "sockets": [[conversation, tag, token, [stream url, ...], ip], ...],
  "concurrency": N}`` opens each socket on its first URL (at most N handshakes in flight) and
  answers once every socket opened once. A socket that closes, or fails to open, moves on to
  its next URL (a load balancer sending it to another replica) and reconnects with the last
  watermark it received, as Direct Line clients do: at once when the connection dropped,
  after 0.1-0.5 s when the attempt failed or the server refused it (a 4xxx close). Each
  socket says it comes from its own ``ip`` (``X-Forwarded-For``: the replicas trust
  127.0.0.0/8 as a proxy), as browsers do; from one address the stream's per-IP cap would
  refuse all but ``MAX_SOCKETS_PER_IP`` of them.
* ``{"cmd": "targets", "watermarks": {conversation: W}}``: what the harness read from the
  database; ``{"cmd": "behind", "tag": T}`` then counts the sockets of tag T that are closed
  or whose watermark is below their conversation's target.
* ``{"cmd": "report", "out": PATH}`` writes every socket's history (see :meth:`dump`).
* ``{"cmd": "close"}``: answers, then exits.

Each frame is checked against the socket's watermark: the stream's sequences are dense, so a
frame of n activities with watermark W must follow watermark W - n exactly (otherwise the
difference is counted as a gap or as repeats).
"""

import asyncio
import json
import os
import random
import sys
import time
from array import array
from collections import Counter

from load_clients import raise_fd_limit
from websockets.asyncio.client import connect


class Socket:
    """One client's stream: where it connects, what it has, and when it got it."""

    __slots__ = ("conversation", "tag", "token", "urls", "headers", "watermark", "open",
                 "opens", "history", "received", "gaps", "repeats", "latencies")  # fmt: skip

    def __init__(self, conversation, tag, token, urls, ip):
        self.conversation, self.tag, self.token, self.urls = conversation, tag, token, urls
        self.headers = {"X-Forwarded-For": ip}
        self.watermark = 0
        self.open = False
        self.opens = array("q")  # monotonic ns of each successful handshake
        self.history = array("q")  # (monotonic ns, watermark) of each frame, flattened
        self.received = self.gaps = self.repeats = 0
        self.latencies = array("q")  # (POST ns, POST-to-frame µs, phase byte), flattened

    def frame(self, text):
        now = time.monotonic_ns()
        data = json.loads(text)
        watermark = int(data["watermark"])
        activities = data["activities"]
        follows = watermark - len(activities)
        if follows > self.watermark:
            self.gaps += follows - self.watermark
        elif follows < self.watermark:
            self.repeats += self.watermark - follows
        self.watermark = max(self.watermark, watermark)
        self.received += len(activities)
        self.history.extend((now, watermark))
        for activity in activities:
            marks = activity.get("channelData") or {}
            if "t" in marks:
                self.latencies.extend((marks["t"], (now - marks["t"]) // 1000,
                                       ord(marks.get("p", "?")[0])))  # fmt: skip

    def dump(self):
        return {
            "conversation": self.conversation, "tag": self.tag, "watermark": self.watermark,
            "open": self.open, "opens": self.opens.tolist(), "history": self.history.tolist(),
            "received": self.received, "gaps": self.gaps, "repeats": self.repeats,
            "latencies": self.latencies.tolist(),
        }  # fmt: skip


class Clients:
    def __init__(self):
        self.sockets = []
        self.tasks = set()
        self.targets = {}
        self.closes = Counter()
        self.errors = Counter()
        self.gate = None

    async def connect_all(self, specs, concurrency):
        self.gate = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        firsts = []
        for spec in specs:
            socket = Socket(*spec)
            self.sockets.append(socket)
            first = asyncio.get_running_loop().create_future()
            firsts.append(first)
            task = asyncio.create_task(self.run(socket, first))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        await asyncio.gather(*firsts)
        return {
            "connected": sum(s.open for s in self.sockets),
            "errors": dict(self.errors),
            "seconds": round(time.monotonic() - started, 3),
        }

    async def run(self, socket, first):
        """Keep ``socket`` connected for the life of the process (see the module docstring)."""
        index = 0
        while True:
            url = socket.urls[index % len(socket.urls)]
            try:
                async with self.gate:
                    ws = await connect(
                        f"{url}?watermark={socket.watermark}&t={socket.token}",
                        additional_headers=socket.headers, compression=None, ping_interval=None,
                        open_timeout=120, max_queue=64,
                    )  # fmt: skip
            except Exception as exc:
                self.errors[f"open:{type(exc).__name__}"] += 1
                # Until it first opens the socket keeps to its first URL: where it starts is
                # part of the scenario (the storm moves exactly the killed replica's sockets).
                index += first.done()
                await asyncio.sleep(random.uniform(0.1, 0.5))
                continue
            socket.open = True
            socket.opens.append(time.monotonic_ns())
            if not first.done():
                first.set_result(None)
            try:
                async for text in ws:
                    socket.frame(text)
            except Exception as exc:
                self.errors[f"read:{type(exc).__name__}"] += 1
            socket.open = False
            self.closes[str(ws.close_code)] += 1
            index += 1
            if (ws.close_code or 0) >= 4000:
                await asyncio.sleep(random.uniform(0.1, 0.5))

    def behind(self, tag):
        targets = self.targets
        return sum(
            1 for s in self.sockets
            if s.tag == tag and (not s.open or s.watermark < targets.get(s.conversation, 0))
        )  # fmt: skip


async def serve():
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    clients = Clients()

    def answer(payload):
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        command = json.loads(line)
        kind = command["cmd"]
        if kind == "connect":
            answer(await clients.connect_all(command["sockets"], command["concurrency"]))
        elif kind == "targets":
            clients.targets.update(command["watermarks"])
            answer({"targets": len(clients.targets)})
        elif kind == "behind":
            answer({"behind": clients.behind(command["tag"]),
                    "open": sum(s.open for s in clients.sockets)})  # fmt: skip
        elif kind == "report":
            with open(command["out"], "w") as handle:
                json.dump({"sockets": [s.dump() for s in clients.sockets],
                           "closes": dict(clients.closes), "errors": dict(clients.errors)},
                          handle)  # fmt: skip
            answer({"written": command["out"]})
        elif kind == "close":
            answer({"closing": len(clients.sockets)})
            os._exit(0)  # the kernel drops thousands of sockets faster than closing each


if __name__ == "__main__":
    asyncio.run(serve())
