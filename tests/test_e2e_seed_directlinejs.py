"""End to end (issue 15): a client written for the seed's URL layout, with only the host changed.

The real botframework-directlinejs 0.15.8 (tests/e2e/driver.js) gets its token from
``/v1/messaging/webchat/<tenant>/token`` and talks Direct Line with ``domain`` set to
``/v1/messaging/webchat/<tenant>/v3/directline``, on two daphne replicas sharing one database
and the Redis backplane, each reached through the production nginx front (TLS). Also: a live
read failure closes the stream with 4500 and the client resumes from its watermark, where the
seed's error frame would end the client's stream for good.

Node, the pinned npm packages and Redis are requirements: missing, these tests fail saying what
to install (``./scripts/test`` installs them). Waits are generous; nothing here measures speed.
"""

import asyncio
import contextlib
import json
import secrets
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import jwt
import redis
import websockets
from django.test import SimpleTestCase

from notifier.events import NotifyEvent
from notifier.wire import encode
from tests.support.directlinejs import DirectLineJS, require_node
from tests.support.replicas import Cluster, redis_unavailable

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "e2e-seed-directlinejs"
TIMEOUT = 30
# The client waits 3-15 s at random before it reconnects, then replays.
RECONNECT_TIMEOUT = 15 + TIMEOUT
SIGNING_KEY = secrets.token_urlsafe(32)
# A name that needs percent-encoding in a URL; its slug does not.
TENANT = f"Seed Co {secrets.token_hex(3)}"


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


class SeedLayoutCase(SimpleTestCase):
    """Two replicas; the tenant's token endpoint is public, as the seed's is."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_node()
        problem = redis_unavailable()
        if problem:
            raise AssertionError(f"the end-to-end tests need Redis: {problem}")
        env = {
            "WEBCHAT_TOKEN_SIGNING_KEY": SIGNING_KEY,
            "DEBUG": "1",
            "WEBCHAT_PUBLIC_TOKEN_TENANTS": TENANT,
        }
        # Through the production nginx front (TLS; tests/support/nginx.py), as clients are.
        cls.cluster = Cluster(database="sqlite", extra_env=env, with_front=True)
        cls.addClassCleanup(cls.cluster.stop)
        cls.cluster.start(2)
        cls.secret = cls.cluster.create_tenant(TENANT)
        cls.prefix = f"/v1/messaging/webchat/{quote(TENANT, safe='')}"

    def setUp(self):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.node = DirectLineJS(
            log_path=ARTIFACTS / f"{self.id().rsplit('.', 1)[-1]}.log",
            env=self.cluster.front.client_env(),
        )
        self.addCleanup(self.node.close)

    def domain(self, replica) -> str:
        return f"{self.cluster.url(replica)}{self.prefix}/v3/directline"

    def seed_token(self, replica=0, **kwargs) -> dict:
        """What the seed's page does first: POST .../token (no secret: a public tenant)."""
        status, body = self.cluster.http(replica, "POST", f"{self.prefix}/token", {}, **kwargs)
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body), {"conversationId", "token", "expires_in"})
        return body

    def start_online(self, client, replica, **options):
        self.node.start(client, domain=self.domain(replica), webSocket=True, **options)
        self.node.wait_status(client, "Online", TIMEOUT)
        return self.node.wait_for(
            lambda e: e["event"] == "socket" and e["client"] == client and e["state"] == "open",
            TIMEOUT,
            f"{client}'s stream to open",
        )

    def send(self, client, text) -> str:
        activity = {
            "type": "message",
            "from": {"id": "ignored"},
            "text": text,
            "channelData": {"clientActivityID": secrets.token_hex(6)},
        }
        return self.node.post(client, activity)

    def wait_reply(self, client, posted_id, text):
        self.node.wait_activity(client, lambda a: a["id"] == posted_id, TIMEOUT, f"echo {text}")
        reply = self.node.wait_activity(
            client, lambda a: a.get("replyToId") == posted_id, TIMEOUT, f"reply to {text}"
        )
        self.assertEqual(reply["text"], f"You said: {text}")
        return reply

    def transcript(self, conversation_id) -> list[dict]:
        status, body = self.cluster.http(
            1, "GET", f"{self.prefix}/v3/directline/conversations/{conversation_id}/activities",
            secret=self.secret,
        )  # fmt: skip
        self.assertEqual(status, 200, body)
        return body["activities"]

    def assert_received_exactly(self, client, expected):
        received = [a["id"] for a in self.node.activities(client)]
        self.assertEqual(len(received), len(set(received)), f"duplicates: {received}")
        self.assertEqual(received, [a["id"] for a in expected])


class SeedClientTests(SeedLayoutCase):
    def test_token_from_the_seed_endpoint_and_domain_under_the_tenant(self):
        token = self.seed_token(replica=0)
        self.assertEqual(claims(token["token"])["conv"], token["conversationId"])
        # The token came from replica 0; the client talks to replica 1, under the prefix.
        opened = self.start_online("a", 1, token=token["token"])
        stream = urlsplit(opened["url"])
        self.assertEqual(
            stream.path,
            f"{self.prefix}/v3/directline/conversations/{token['conversationId']}/stream",
        )
        posted = self.send("a", "hello seed layout")
        self.assertTrue(posted.startswith(token["conversationId"] + "|"))
        self.wait_reply("a", posted, "hello seed layout")

        # A second client on replica 0 by the slug (Web Chat resuming with its conversation id).
        slug = TENANT.lower().replace(" ", "-")
        slug_domain = self.domain(0).replace(quote(TENANT, safe=""), slug)
        self.node.start("b", domain=slug_domain, webSocket=True, token=token["token"],
                        conversationId=token["conversationId"])
        self.node.wait_status("b", "Online", TIMEOUT)
        # Its replay first: directlinejs emits a frame's activities one scheduler tick each
        # (mergeMap), so a live frame arriving mid-replay can be interleaved with it.
        self.node.wait_activity("b", lambda a: a.get("replyToId"), TIMEOUT, "b's replay")
        posted = self.send("b", "from the slug")
        for client in ("a", "b"):
            self.wait_reply(client, posted, "from the slug")
        expected = self.transcript(token["conversationId"])
        self.assertEqual(len(expected), 4)
        self.assert_received_exactly("a", expected)
        self.assert_received_exactly("b", expected)

    def test_the_seed_pages_double_start_lands_on_one_conversation(self):
        # The seed's page may call createDirectLine twice with the token it fetched (what the
        # seed's conv_dedup.rs is for): both land on the token's conversation, any replica.
        token = self.seed_token(replica=1)
        self.node.start("a", domain=self.domain(0), webSocket=True, token=token["token"])
        self.node.start("b", domain=self.domain(1), webSocket=True, token=token["token"])
        for client in ("a", "b"):
            self.node.wait_status(client, "Online", TIMEOUT)
        posted = self.send("a", "once")
        for client in ("a", "b"):
            self.wait_reply(client, posted, "once")

    def test_another_tenants_token_is_refused(self):
        other_secret = self.cluster.create_tenant(f"other-{secrets.token_hex(3)}")
        status, body = self.cluster.http(
            0, "POST", "/v3/directline/tokens/generate", {}, secret=other_secret
        )
        self.assertEqual(status, 200)
        self.node.start("a", domain=self.domain(0), webSocket=True, token=body["token"])
        self.node.wait_status("a", "FailedToConnect", TIMEOUT)
        error = self.node.wait_for(
            lambda e: e["event"] == "activity_error" and e["client"] == "a", TIMEOUT, "the error"
        )
        self.assertEqual(error["status"], 403, error)


class LiveReadFailureTests(SeedLayoutCase):
    """Issue 15 item 7: a failed live read closes with 4500; the client resumes, losing nothing."""

    def notify(self, tenant_id, conversation_id, watermark):
        """Announce a watermark on the replicas' channel, as another replica would."""
        event = NotifyEvent(str(tenant_id), conversation_id, watermark)
        with redis.Redis.from_url(self.cluster.redis_url) as client:
            client.publish(self.cluster.channel, encode(event, uuid.uuid4()))

    def test_failed_live_read_closes_4500_and_the_client_resumes(self):
        token = self.seed_token(replica=0)
        conversation_id = token["conversationId"]
        self.start_online("a", 1, token=token["token"])
        posted = self.send("a", "before")
        self.wait_reply("a", posted, "before")
        before = self.transcript(conversation_id)

        # The database fails the stream's next read: its table is gone for a moment.
        database = sqlite3.connect(self.cluster.database_url.removeprefix("sqlite:///"), timeout=20)
        self.addCleanup(database.close)
        database.execute("ALTER TABLE webchat_activity RENAME TO webchat_activity_away")
        try:
            self.notify(claims(token["token"])["tid"], conversation_id, len(before) + 1)
            closed = self.node.wait_for(
                lambda e: e["event"] == "socket" and e["client"] == "a" and e["state"] == "close",
                TIMEOUT,
                "the stream to close",
            )
        finally:
            database.execute("ALTER TABLE webchat_activity_away RENAME TO webchat_activity")
        self.assertEqual(closed["code"], 4500, closed)

        # Posted while the client is away (it waits 3-15 s before it reconnects).
        status, body = self.cluster.http(
            0, "POST", f"{self.prefix}/v3/directline/conversations/{conversation_id}/activities",
            {"type": "message", "from": {"id": "x"}, "text": "while away"}, token=token["token"],
        )  # fmt: skip
        self.assertEqual(status, 200, body)
        self.node.wait_activity(
            "a", lambda a: a.get("replyToId") == body["id"], RECONNECT_TIMEOUT,
            "what was posted while away, after the reconnect",
        )  # fmt: skip
        self.assertEqual(len(self.node.sockets("a", "open")), 2)
        self.assert_received_exactly("a", self.transcript(conversation_id))
        self.assertNotIn("FailedToConnect", self.node.statuses("a"))
        self.assertEqual(self.node.of("a", "activity_error"), [])


class SeedErrorFrameTests(SimpleTestCase):
    """What the seed does instead (``{"error": ...}`` on the open socket), shown to the same
    client. The server here is a few lines of ``websockets``: it stands for the seed's stream,
    not for ours, and only the client's reaction is under test."""

    def setUp(self):
        require_node()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.node = DirectLineJS(log_path=ARTIFACTS / "seed-error-frame.log")
        self.addCleanup(self.node.close)
        self.loop = asyncio.new_event_loop()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        ready = threading.Event()
        self.thread = threading.Thread(target=self.serve, args=(ready,), daemon=True)
        self.thread.start()
        self.assertTrue(ready.wait(TIMEOUT))
        self.addCleanup(self.stop)

    def serve(self, ready):
        async def stream(ws):
            frame = {"activities": [{"type": "message", "id": "c|0000001", "text": "one"}],
                     "watermark": "1"}
            await ws.send(json.dumps(frame))
            await asyncio.sleep(0.5)
            await ws.send(json.dumps({"error": "fetch_failed"}))  # the seed's pump.rs
            await asyncio.sleep(0.5)
            frame = {"activities": [{"type": "message", "id": "c|0000002", "text": "two"}],
                     "watermark": "2"}
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(json.dumps(frame))
                await asyncio.sleep(TIMEOUT)

        async def main():
            self.stopping = asyncio.Event()
            async with websockets.serve(stream, sock=self.sock):
                ready.set()
                await self.stopping.wait()

        self.loop.run_until_complete(main())

    def stop(self):
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(TIMEOUT)
        self.loop.close()

    def test_an_error_frame_ends_the_clients_activity_stream(self):
        host, port = self.sock.getsockname()
        self.node.start(
            "a", domain=f"http://{host}:{port}/v3/directline", webSocket=True, token="a.b.c",
            conversationId="c", streamUrl=f"ws://{host}:{port}/stream",
        )  # fmt: skip
        self.node.wait_activity("a", lambda a: a["id"] == "c|0000001", TIMEOUT, "the first frame")
        error = self.node.wait_for(
            lambda e: e["event"] == "activity_error" and e["client"] == "a", TIMEOUT,
            "the client's activity stream to fail on the error frame",
        )  # fmt: skip
        self.assertIn("undefined", error["message"])
        time.sleep(1.5)  # the next frame was sent 0.5 s after the error frame
        self.assertEqual([a["id"] for a in self.node.activities("a")], ["c|0000001"])
