"""Subscribing costs no Redis call: sockets join the process-local layer, never Redis.

A replica on a private ``redis-server`` (no one else's commands in its statistics): opening
and closing sockets leaves Redis' command counters untouched, while a post does publish.
"""

import asyncio
import json
import time

import websockets
from django.test import SimpleTestCase

from tests.support.redis_server import RedisServer, requires_redis_server
from tests.support.replicas import start_cluster

API = "/v3/directline"
TIMEOUT = 15
#: Commands that say nothing about subscribers: this test's own INFO (in MULTI/EXEC), and
#: health checks.
IGNORED = {"info", "ping", "multi", "exec"}
SENTINEL = "test:calls-sentinel"


class CommandCalls:
    """Redis' calls per command, without the backplane probe's PUBLISHes.

    Each listener PUBLISHes a probe about once a second on ``<channel>:probe:<instance>`` (it
    proves the subscription works; no subscriber causes it). A pattern subscriber sees each
    of them; a sentinel PUBLISHed in the same MULTI/EXEC as each INFO marks where the
    snapshot falls in that stream, so the probes between two snapshots are known exactly.
    """

    def __init__(self, client):
        self.client = client
        self.watch = client.pubsub(ignore_subscribe_messages=True)
        self.watch.psubscribe("*:probe:*", SENTINEL)
        self.probes = 0
        self.sentinels = 0

    def __call__(self):
        """Calls per command so far (one client for all: a new connection says HELLO)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.publish(SENTINEL, "x")
        pipe.info("commandstats")
        stats = pipe.execute()[1]
        self.sentinels += 1
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert time.monotonic() < deadline, "the sentinel never arrived"
            # None also stands for a (p)subscribe confirmation, which is ignored.
            message = self.watch.get_message(timeout=1)
            if message is None:
                continue
            if message["channel"] == SENTINEL.encode():
                break
            self.probes += 1
        # redis-py names the keys "cmdstat_<command>" or, for subcommands, "cmdstat_<a>|<b>".
        calls = {key.removeprefix("cmdstat_"): value["calls"] for key, value in stats.items()}
        # Our sentinels and the probes' PUBLISHes so far are not the replica's doing.
        calls["publish"] = calls.get("publish", 0) - self.probes - self.sentinels
        return calls

    def close(self):
        self.watch.close()


def calls_since(before, after):
    return {
        command: after[command] - before.get(command, 0)
        for command in after
        if command not in IGNORED and after[command] != before.get(command, 0)
    }


@requires_redis_server
class SubscriberRedisCallsTests(SimpleTestCase):
    async def test_sockets_cost_no_redis_calls(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        cluster = await asyncio.to_thread(start_cluster, self, 1, "sqlite", redis_url=server.url)
        secret = await asyncio.to_thread(cluster.create_tenant)
        stats = server.client()
        self.addCleanup(stats.close)
        command_calls = CommandCalls(stats)
        self.addCleanup(command_calls.close)

        def call(method, path, **auth):
            status, body = cluster.http(0, method, path, **auth)
            self.assertIn(status, (200, 201), body)
            return body

        generated = await asyncio.to_thread(call, "POST", f"{API}/tokens/generate", secret=secret)
        started = await asyncio.to_thread(
            call, "POST", f"{API}/conversations", token=generated["token"]
        )
        # The first connection starts the replica's runtime (its SUBSCRIBE): not counted.
        async with websockets.connect(started["streamUrl"], open_timeout=TIMEOUT) as first:
            await asyncio.sleep(0.5)
            before = await asyncio.to_thread(command_calls)
            for _ in range(3):
                sockets = [
                    await websockets.connect(started["streamUrl"], open_timeout=TIMEOUT)
                    for _ in range(4)
                ]
                for ws in sockets:
                    await ws.send("")
                    await ws.close()
            after = await asyncio.to_thread(command_calls)
            self.assertEqual(calls_since(before, after), {})

            # The instrument works: one post, one PUBLISH (and the bot's reply, another).
            conversation_id = started["conversationId"]
            await asyncio.to_thread(
                cluster.http, 0, "POST", f"{API}/conversations/{conversation_id}/activities",
                {"type": "message", "text": "hi", "from": {"id": "u"}}, token=started["token"],
            )  # fmt: skip
            received = 0  # the message and the bot's reply
            while received < 2:
                frame = json.loads(await asyncio.wait_for(first.recv(), TIMEOUT))
                received += len(frame["activities"])
            # Local delivery comes first: the PUBLISH may reach Redis a moment later.
            for _ in range(50):
                published = calls_since(after, await asyncio.to_thread(command_calls))
                if published.get("publish", 0) >= 1:
                    break
                await asyncio.sleep(0.1)
            self.assertGreaterEqual(published.get("publish", 0), 1, published)
