"""The chaos suite's harness: two real daphne replicas, stream sockets on both, activities
posted continuously through both, and one failure at a time (tests/test_chaos_suite.py).

A failure is a :class:`Failure`: where the replicas run (``deploy``), what breaks while the
posts go on (``strike``), and what brings the system back once they stopped (``recover``,
which returns the moment catch-up is counted from). :meth:`Chaos.run` does the rest::

    result = await Chaos(testcase, failure).run()
    result.catch_up        # seconds from recovery until every socket had every activity

Every socket is checked against the transcript the database holds after the failure: every
activity exactly once, in order (a socket whose replica died resumes on the other replica
with its watermark, and the two connections together must be the transcript). No GET may
answer 5xx, and every replica still up answers ``/readyz`` 200 after recovery.
"""

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import urllib.error
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from tests.test_two_replicas import StreamClient

from .replicas import ROOT, start_cluster

API = "/v3/directline"
#: Seconds between two posts (alternating the two conversations, each through its replica).
PERIOD = 0.1
#: Sockets on each replica for each conversation.
SOCKETS_EACH = 2
#: Seconds of posting before the failure, so every part is warm.
WARM = 1.0
#: Waiting for anything that is not measured (catching up included): the machine is shared.
TIMEOUT = 30

_COMMIT_THEN_DIE = """
import os, signal, time
from webchat.models import Conversation
from webchat.transcript import append_activity
for cid in {ids!r}:
    time.sleep({spacing})
    conversation = Conversation.objects.get(pk=cid)
    for n in range({count}):
        append_activity(conversation, {{"type": "message", "text": f"lost {{n}}",
                                        "from": {{"id": "bot", "role": "bot"}}}})
    print(cid, time.monotonic(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def commit_then_die(cluster, conversation_ids, count, spacing):
    """A replica SIGKILLed between commit and PUBLISH: a ``manage.py shell`` on the cluster's
    database stores ``count`` activities in each conversation through the app's own write
    path (row and watermark in one transaction) with a notifier that publishes to no one,
    ``spacing`` seconds apart, then SIGKILLs itself. Return the monotonic time of each
    conversation's last commit (CLOCK_MONOTONIC is one clock for the whole machine)."""
    env = {**cluster.env, "WEBCHAT_NOTIFIER_BACKEND": "memory"}
    code = _COMMIT_THEN_DIE.format(ids=list(conversation_ids), count=count, spacing=spacing)
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != -signal.SIGKILL:
        raise AssertionError(f"the writer exited with {done.returncode}: {done.stderr[-2000:]}")
    lines = [line.split() for line in done.stdout.splitlines()]
    return {words[0]: float(words[1]) for words in lines
            if len(words) == 2 and words[0] in conversation_ids}


class Failure:
    """One failure of the suite. Subclasses say where the replicas run and what breaks."""

    #: What the README's table calls it (and the log line).
    name = "a failure"

    def deploy(self, testcase) -> dict:
        """Start what the replicas need (cleanups on ``testcase``); return keyword arguments
        for ``start_cluster`` (``redis_url``, ``database``...). Default: the shared Redis."""
        return {}

    async def strike(self, chaos):
        """Break something while the posts go on."""

    async def recover(self, chaos):
        """Repair it, the posts stopped; return the monotonic time catch-up counts from
        (one float, or a dict conversation id -> float)."""
        return time.monotonic()


class Socket:
    """One client's stream: a real WebSocket client, resumed on another replica with its
    watermark when its replica dies (the Direct Line client's reconnect)."""

    def __init__(self, chaos, conversation, replica):
        self.chaos, self.conversation, self.replica = chaos, conversation, replica
        self.connections = []  # StreamClient, one for each (re)connection

    @property
    def current(self):
        return self.connections[-1]

    async def connect(self, watermark=None):
        self.connections.append(
            await self.chaos.stream(self.replica, self.conversation, watermark))

    def ids(self):
        return [i for client in self.connections for i in client.ids()]

    def arrived(self, activity_id):
        return next((c.arrived[activity_id] for c in self.connections
                     if activity_id in c.arrived), None)

    async def read_forever(self):
        """Receive frames until cancelled, resuming elsewhere when the replica is gone."""
        while True:
            try:
                await self.current.receive(1.0)
            except TimeoutError:
                continue
            except ConnectionClosed:
                if self.replica not in self.chaos.dead:
                    raise
                self.replica = self.chaos.live()[0]
                await self.connect(self.current.watermark)


@dataclass
class Result:
    catch_up: float  # seconds from recovery until every socket had every activity
    delay: float  # the longest any posted activity took from its POST's answer to a socket
    activities: int  # in the transcripts after the failure
    sockets: int
    posts: dict = field(default_factory=dict)  # outcome -> count
    gets: dict = field(default_factory=dict)  # status (or error) -> count


class Chaos:
    """Runs one :class:`Failure` against two replicas under traffic (module docstring)."""

    def __init__(self, testcase, failure):
        self.testcase, self.failure = testcase, failure
        self.dead = set()  # replicas a failure killed
        self.posted = {}  # conversation id -> [activity ids answered 200], in order
        self.posted_at = {}
        self.posts, self.gets = {}, {}
        self._stop = asyncio.Event()

    def live(self):
        return [i for i in range(len(self.cluster.replicas)) if i not in self.dead]

    async def call(self, replica, method, path, body=None, **auth):
        return await asyncio.to_thread(self.cluster.http, replica, method, path, body,
                                       timeout=TIMEOUT, **auth)

    async def stream(self, replica, conversation, watermark=None):
        query = "" if watermark is None else f"?watermark={watermark}"
        status, body = await self.call(
            replica, "GET", f"{API}/conversations/{conversation['conversationId']}{query}",
            token=conversation["token"])
        self.testcase.assertEqual(status, 200, body)
        return await StreamClient.open(self.testcase, body["streamUrl"])

    async def transcript(self, replica, conversation):
        status, body = await self.call(
            replica, "GET", f"{API}/conversations/{conversation['conversationId']}/activities",
            token=conversation["token"])
        self.testcase.assertEqual(status, 200, body)
        return [activity["id"] for activity in body["activities"]]

    async def run(self) -> Result:
        kwargs = {"replicas": 2, **self.failure.deploy(self.testcase)}
        # The echo bot off: the posts are the only activities.
        kwargs["extra_env"] = {"WEBCHAT_BOT": "", **kwargs.get("extra_env", {})}
        self.cluster = await asyncio.to_thread(start_cluster, self.testcase, **kwargs)
        self.secret = await asyncio.to_thread(self.cluster.create_tenant)
        # Conversation i is posted to through replica i and streamed on both: the other
        # replica's sockets get its activities through the backplane (or a catch-up), never
        # through a local read made for the next post.
        self.conversations = []
        for replica in (0, 1):
            status, body = await self.call(replica, "POST", f"{API}/conversations", {},
                                           secret=self.secret)
            self.testcase.assertEqual(status, 201, body)
            self.conversations.append(body)
            self.posted[body["conversationId"]] = []
        self.sockets = [Socket(self, c, r) for c in self.conversations for r in (0, 1)
                        for _ in range(SOCKETS_EACH)]
        for socket in self.sockets:
            await socket.connect()
        readers = [asyncio.create_task(s.read_forever()) for s in self.sockets]
        poster = asyncio.create_task(self._post_forever())
        getter = asyncio.create_task(self._get_forever())
        try:
            await asyncio.sleep(WARM)
            await self.failure.strike(self)
            self._stop.set()
            await poster
            since = await self.failure.recover(self)
            await getter
            return await self._check(since, readers)
        finally:
            self._stop.set()
            for task in (poster, getter, *readers):
                task.cancel()
            await asyncio.gather(poster, getter, *readers, return_exceptions=True)
            for socket in self.sockets:
                with contextlib.suppress(Exception):
                    await socket.current.close()

    async def _post_forever(self):
        turn = 0
        while not self._stop.is_set():
            index = turn % 2
            conversation = self.conversations[index]
            replica = index if index in self.live() else self.live()[0]
            cid = conversation["conversationId"]
            try:
                status, body = await self.call(
                    replica, "POST", f"{API}/conversations/{cid}/activities",
                    {"type": "message", "text": f"m{turn}", "from": {"id": "u1"}},
                    token=conversation["token"])
            except (urllib.error.URLError, OSError) as exc:
                if replica not in self.dead:
                    raise
                status, body = type(exc).__name__, None  # the replica died under it
            if status == 200:
                self.posted[cid].append(body["id"])
                self.posted_at[body["id"]] = time.monotonic()
            elif isinstance(status, int):
                # A write cut by the failure: 500 ServiceError (README "Delivery guarantees").
                self.testcase.assertEqual(status, 500, body)
            self.posts[status] = self.posts.get(status, 0) + 1
            turn += 1
            await asyncio.sleep(PERIOD)

    async def _get_forever(self):
        """Poll the transcript on every replica still up: reads must survive every failure."""
        while not self._stop.is_set():
            for replica in self.live():
                conversation = self.conversations[replica]
                try:
                    status, body = await self.call(
                        replica, "GET",
                        f"{API}/conversations/{conversation['conversationId']}/activities",
                        token=conversation["token"])
                except (urllib.error.URLError, OSError) as exc:
                    if replica in self.dead:  # killed since live() was read
                        continue
                    status, body = type(exc).__name__, str(exc)
                self.gets[status] = self.gets.get(status, 0) + 1
                self.testcase.assertEqual(status, 200, f"GET on replica {replica}: {body}")
            await asyncio.sleep(0.05)

    async def _check(self, since, readers) -> Result:
        test = self.testcase
        replica = self.live()[0]
        transcripts = {c["conversationId"]: await self.transcript(replica, c)
                       for c in self.conversations}
        for cid, ids in transcripts.items():
            # Every post answered 200 is stored (in order); a cut one may be too.
            test.assertEqual([i for i in ids if i in set(self.posted[cid])], self.posted[cid])
        if not isinstance(since, dict):
            since = dict.fromkeys(transcripts, since)

        def complete(socket):
            ids = transcripts[socket.conversation["conversationId"]]
            return all(socket.arrived(i) for i in ids)

        deadline = time.monotonic() + TIMEOUT
        while not all(complete(s) for s in self.sockets):
            for reader in readers:
                if reader.done():
                    reader.result()  # a frame that broke the rules, or an unexpected close
            if time.monotonic() > deadline:
                behind = [(s.conversation["conversationId"], s.replica, len(s.ids()),
                           len(transcripts[s.conversation["conversationId"]]))
                          for s in self.sockets if not complete(s)]
                test.fail(f"not caught up within {TIMEOUT} s (conversation, replica, "
                          f"received, stored): {behind}")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # room for a duplicate to show
        lags, delays = [0.0], [0.0]
        for socket in self.sockets:
            cid = socket.conversation["conversationId"]
            test.assertEqual(socket.ids(), transcripts[cid], "exactly once, in order")
            if transcripts[cid]:
                last = max(socket.arrived(i) for i in transcripts[cid])
                lags.append(last - since[cid])
            # A frame may come before the POST's answer: the delay is then 0.
            delays += [socket.arrived(i) - self.posted_at[i] for i in self.posted[cid]]
        for index in self.live():
            await self.wait_ready(index)
        for index in self.live():  # every replica reads the same database
            for conversation in self.conversations:
                test.assertEqual(await self.transcript(index, conversation),
                                 transcripts[conversation["conversationId"]])
        return Result(catch_up=max(lags), delay=max(delays),
                      activities=sum(map(len, transcripts.values())),
                      sockets=len(self.sockets), posts=self.posts, gets=self.gets)

    async def wait_ready(self, replica, timeout=TIMEOUT):
        """Poll ``/readyz`` until it answers 200 (after recovery nothing less will do)."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.call(replica, "GET", "/readyz")
            if status == 200:
                return body
            if time.monotonic() > deadline:
                self.testcase.fail(f"/readyz of replica {replica} still {status}: {body}")
            await asyncio.sleep(0.2)

    async def kill_replica(self, index):
        """SIGKILL replica ``index`` (its sockets resume on another replica)."""
        self.dead.add(index)
        await asyncio.to_thread(self.cluster.replicas[index].kill)
