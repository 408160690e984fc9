"""WebSocket clients for ``bench/load.py``: one asyncio process holding many stream sockets.

Started by the harness (never by hand); it reads one JSON command per stdin line and answers
each with one JSON line on stdout:

* ``{"cmd": "connect", "sockets": [[url, conversation, replica, source address or absent], ...],
  "concurrency": N}`` opens the sockets (at most N handshakes at once) and answers when all
  are open or failed.
* ``{"cmd": "counts"}``: activities received so far, per phase.
* ``{"cmd": "report", "out": PATH}``: writes the latencies (see :func:`Recorder.dump`).
* ``{"cmd": "close"}``: answers, then exits (the sockets drop with the process).

Each activity the poster sends carries ``channelData`` ``{"t": CLOCK_MONOTONIC ns at the
POST, "p": phase, "r": replica posted to}``; CLOCK_MONOTONIC is one clock for every process
on the machine, so ``now - t`` here is the POST-to-frame latency. Clients use the
``websockets`` package without compression and without their own pings (daphne pings).
"""

import asyncio
import json
import os
import resource
import sys
import time
from array import array
from collections import Counter, defaultdict
from datetime import datetime

from websockets.asyncio.client import connect


def raise_fd_limit():
    """Raise the soft limit on open files to the hard limit (each socket is one fd)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Recorder:
    """Latencies (microseconds, by phase and by same/other replica) and delivery counts."""

    def __init__(self):
        self.latencies = defaultdict(lambda: {"same": array("q"), "other": array("q")})
        # From the server's ``timestamp`` (stamped in the write transaction, ms resolution,
        # wall clock) to the frame: the fan-out path alone, without the POST's own queueing.
        self.stored = defaultdict(lambda: array("q"))
        # When each frame's activity was posted (the ``t`` mark, one per latency, same order
        # as same + other): latency over the phase's course, e.g. a slow start after connect.
        self.sent = defaultdict(lambda: {"same": array("q"), "other": array("q")})
        self.per_conversation = defaultdict(Counter)  # phase -> conversation -> activities
        self.last_frame = {}  # phase -> monotonic ns of the newest frame
        self.frames = 0
        self.out_of_order = 0
        self.errors = Counter()

    def frame(self, text, replica, conversation, state):
        """Called for each frame a socket receives; ``state`` is ``[newest watermark]``."""
        now = time.monotonic_ns()
        wall = time.time()
        self.frames += 1
        data = json.loads(text)
        watermark = int(data["watermark"])
        if watermark <= state[0]:
            self.out_of_order += 1
        state[0] = watermark
        for activity in data["activities"]:
            marks = activity.get("channelData") or {}
            sent = marks.get("t")
            if sent is None:
                continue
            phase = marks.get("p", "?")
            side = "same" if marks.get("r") == replica else "other"
            self.latencies[phase][side].append((now - sent) // 1000)
            self.sent[phase][side].append(sent)
            stamp = activity.get("timestamp")
            if stamp:
                stored = datetime.fromisoformat(stamp).timestamp()
                self.stored[phase].append(int((wall - stored) * 1e6))
            self.per_conversation[phase][conversation] += 1
            self.last_frame[phase] = now

    def counts(self):
        return {
            "frames": self.frames,
            "out_of_order": self.out_of_order,
            "phases": {p: sum(c.values()) for p, c in self.per_conversation.items()},
        }

    def dump(self, path):
        """Write ``{phase: {"same": [...], "other": [...], "per_conversation": {...},
        "last_frame_ns": N}}`` as JSON (the harness merges the processes' files)."""
        out = {}
        for phase in set(self.latencies) | set(self.per_conversation):
            sides = self.latencies[phase]
            out[phase] = {
                "same": sides["same"].tolist(),
                "other": sides["other"].tolist(),
                "sent_ns": self.sent[phase]["same"].tolist() + self.sent[phase]["other"].tolist(),
                "stored": self.stored[phase].tolist(),
                "per_conversation": dict(self.per_conversation[phase]),
                "last_frame_ns": self.last_frame.get(phase),
            }
        with open(path, "w") as handle:
            json.dump(out, handle)


class Clients:
    """The process's sockets, each with its own reading task (as a browser has one)."""

    def __init__(self):
        self.recorder = Recorder()
        self.tasks = set()
        self.open = 0
        self.closed = Counter()

    async def connect_all(self, sockets, concurrency):
        gate = asyncio.Semaphore(concurrency)
        opened = []

        async def one(url, conversation, replica, address=None):
            # ``address``: the loopback address to connect from (the stream caps sockets per
            # client address); None: the kernel's choice, 127.0.0.1.
            local = {"local_addr": (address, 0)} if address else {}
            async with gate:
                try:
                    ws = await connect(
                        url, compression=None, ping_interval=None, open_timeout=120,
                        max_queue=64, **local,
                    )  # fmt: skip
                except Exception as exc:
                    self.recorder.errors[type(exc).__name__] += 1
                    return
            opened.append(ws)
            self.open += 1
            task = asyncio.create_task(self.read(ws, conversation, replica))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        started = time.monotonic()
        await asyncio.gather(*(one(*socket) for socket in sockets))
        return {
            "connected": len(opened),
            "failed": len(sockets) - len(opened),
            "errors": dict(self.recorder.errors),
            "seconds": round(time.monotonic() - started, 3),
        }

    async def read(self, ws, conversation, replica):
        state = [-1]
        frame = self.recorder.frame
        try:
            async for text in ws:
                frame(text, replica, conversation, state)
        except Exception as exc:
            self.recorder.errors[f"read:{type(exc).__name__}"] += 1
        finally:
            self.open -= 1
            self.closed[str(ws.close_code)] += 1


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
        elif kind == "counts":
            answer(
                {
                    **clients.recorder.counts(),
                    "open": clients.open,
                    "closed": dict(clients.closed),
                    "errors": dict(clients.recorder.errors),
                }
            )
        elif kind == "report":
            clients.recorder.dump(command["out"])
            answer({"written": command["out"]})
        elif kind == "close":
            answer({"closing": clients.open})
            # Thousands of sockets: the kernel drops them at exit, faster than closing each.
            os._exit(0)


if __name__ == "__main__":
    asyncio.run(serve())
