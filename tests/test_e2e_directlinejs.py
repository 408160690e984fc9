"""End to end: the real botframework-directlinejs 0.15.8 (Node 20) against two daphne replicas.

The client runs as it ships (tests/e2e/driver.js, driven through tests/support/directlinejs.py),
against two replicas in production settings (DEBUG=0) sharing one SQLite database on the
Redis backplane (the shared Redis, a unique channel; tests/support/replicas.py), each reached
through the production nginx front (TLS from a local CA that Node trusts through
NODE_EXTRA_CA_CERTS; tests/support/nginx.py), in WebSocket mode and in polling mode.

Node, the pinned npm packages, nginx and a reachable Redis are requirements, not options:
when one is missing these tests fail saying what to install (``./scripts/test`` installs
them).
Waits are generous; nothing here measures speed.
"""

import re
import secrets
import time
from pathlib import Path

import jwt
from django.test import SimpleTestCase

from tests.support.directlinejs import DirectLineJS, require_node
from tests.support.replicas import Cluster, redis_unavailable
from webchat.tokens import ALGORITHM

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "e2e-directlinejs"
TIMEOUT = 30  # seconds for anything that should take well under one
# The client waits 3-15 s at random before it reconnects, then replays.
RECONNECT_TIMEOUT = 15 + TIMEOUT
# Short enough that a quiet socket is closed by the server within the test.
IDLE_TIMEOUT = 4
SIGNING_KEY = secrets.token_urlsafe(32)
PRODUCTION = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "WEBCHAT_TOKEN_SIGNING_KEY": SIGNING_KEY,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CORS_ALLOWED_ORIGINS": "https://www.example.com",
}

ACTIVITY_ID = r"{conversation}\|[0-9]{{7}}"
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")

_clusters = {}


def cluster(kind: str) -> Cluster:
    """The module's replica pairs, started on first use and stopped by tearDownModule.

    ``main``: the service's defaults. ``idle``: a short stream idle timeout, so the server
    itself closes quiet sockets (close code 4408) and the client has to reconnect.
    """
    if kind not in _clusters:
        problem = redis_unavailable()
        if problem:
            raise AssertionError(f"the end-to-end tests need Redis: {problem}")
        env = dict(PRODUCTION)
        if kind == "idle":
            env["WEBCHAT_STREAM_IDLE_TIMEOUT"] = str(IDLE_TIMEOUT)
        _clusters[kind] = Cluster(database="sqlite", extra_env=env, with_front=True).start(2)
    return _clusters[kind]


def tearDownModule():
    while _clusters:
        _clusters.popitem()[1].stop()


def sequence(activity_id: str) -> int:
    return int(activity_id.rsplit("|", 1)[1])


def expired(token: str) -> str:
    """The same token (same claims) as if issued an hour ago: signed, but expired."""
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["iat"] -= 3600
    claims["exp"] = claims["iat"] + 1800
    return jwt.encode(claims, SIGNING_KEY, algorithm=ALGORITHM)


class DirectLineJSCase(SimpleTestCase):
    """Shared steps. Subclasses set ``web_socket`` (the client's mode)."""

    web_socket = True
    cluster_kind = "main"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_node()
        cls.cluster = cluster(cls.cluster_kind)
        cls.secret = cls.cluster.create_tenant(f"e2e-{secrets.token_hex(4)}")

    def setUp(self):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.node = DirectLineJS(
            log_path=ARTIFACTS / f"{self.id().rsplit('.', 1)[-1]}.log",
            env=self.cluster.front.client_env(),
        )
        self.addCleanup(self.node.close)

    # Steps

    def domain(self, replica: int) -> str:
        return self.cluster.url(replica) + "/v3/directline"

    def generate(self, replica=0) -> dict:
        """What a tenant's backend does: POST /tokens/generate with the secret."""
        status, body = self.cluster.http(
            replica, "POST", "/v3/directline/tokens/generate", {}, secret=self.secret
        )
        self.assertEqual(status, 200, body)
        return body

    def start(self, client, replica, **options):
        options.setdefault("webSocket", self.web_socket)
        if not self.web_socket:
            options.setdefault("pollingInterval", 300)
        self.node.start(client, domain=self.domain(replica), **options)

    def start_online(self, client, replica, **options):
        self.start(client, replica, **options)
        self.node.wait_status(client, "Online", TIMEOUT)
        if self.web_socket:
            self.node.wait_for(
                lambda e: e["event"] == "socket" and e["client"] == client and e["state"] == "open",
                TIMEOUT,
                f"{client}'s stream to open",
            )

    def send_message(self, client, text) -> tuple[str, str]:
        """Post a message as Web Chat does (with a clientActivityID); return (id, cid)."""
        client_activity_id = secrets.token_hex(6)
        activity = {
            "type": "message",
            "from": {"id": "ignored-the-token-names-the-user"},
            "text": text,
            "channelData": {"clientActivityID": client_activity_id},
        }
        return self.node.post(client, activity), client_activity_id

    def transcript(self, conversation_id, replica=0) -> list[dict]:
        status, body = self.cluster.http(
            replica,
            "GET",
            f"/v3/directline/conversations/{conversation_id}/activities?watermark=",
            secret=self.secret,
        )
        self.assertEqual(status, 200, body)
        return body["activities"]

    def wait_for_transcript(self, conversation_id, count) -> list[dict]:
        """The transcript once it holds ``count`` activities (the bot replies on its own)."""
        deadline = time.monotonic() + TIMEOUT
        while len(activities := self.transcript(conversation_id)) < count:
            if time.monotonic() > deadline:
                self.fail(f"the transcript has {len(activities)} activities, not {count}")
            time.sleep(0.1)
        return activities

    def wait_for_echo_and_reply(self, client, posted_id, text, client_activity_id, user_id):
        """The echo and the bot's reply, checked as Web Chat needs them."""
        echo = self.node.wait_activity(client, lambda a: a["id"] == posted_id, TIMEOUT, "echo")
        conversation_id = posted_id.rsplit("|", 1)[0]
        self.assertRegex(echo["id"], ACTIVITY_ID.format(conversation=re.escape(conversation_id)))
        self.assertEqual(echo["type"], "message")
        self.assertEqual(echo["text"], text)
        self.assertEqual(echo["from"], {"id": user_id, "role": "user"})
        self.assertEqual(echo["channelData"], {"clientActivityID": client_activity_id})
        self.assertEqual(echo["channelId"], "directline")
        self.assertEqual(echo["conversation"], {"id": conversation_id})
        self.assertRegex(echo["timestamp"], TIMESTAMP)
        reply = self.node.wait_activity(
            client, lambda a: a.get("replyToId") == posted_id, TIMEOUT, "the bot's reply"
        )
        self.assertEqual(reply["type"], "message")
        self.assertEqual(reply["text"], f"You said: {text}")
        self.assertEqual(reply["from"]["role"], "bot")
        self.assertGreater(sequence(reply["id"]), sequence(echo["id"]))
        self.assertRegex(reply["timestamp"], TIMESTAMP)
        return echo, reply

    def assert_received_exactly(self, client, expected: list[dict]):
        """``client`` received each of ``expected`` once, in order, and nothing else."""
        received = [a["id"] for a in self.node.activities(client)]
        self.assertEqual(len(received), len(set(received)), f"duplicates: {received}")
        self.assertEqual(received, [a["id"] for a in expected])


class BothModes:
    """The scenarios run in WebSocket mode and in polling mode."""

    def test_conversation_from_generated_token_gets_echo_and_reply(self):
        generated = self.generate(replica=0)
        user_id = jwt.decode(generated["token"], options={"verify_signature": False})["user"]
        # The token came from replica 0; the client talks to replica 1.
        self.start_online("a", 1, token=generated["token"])
        posted_id, cid = self.send_message("a", "hello from directlinejs")
        self.assertTrue(posted_id.startswith(generated["conversationId"] + "|"))
        echo, reply = self.wait_for_echo_and_reply(
            "a", posted_id, "hello from directlinejs", cid, user_id
        )
        self.assertEqual(reply["recipient"]["id"], user_id)
        # The client's watermark is where it will resume from: the newest activity it has.
        last = self.node.of("a", "activity")[-1]
        self.assertEqual(last["watermark"], str(sequence(reply["id"])))
        self.assert_received_exactly("a", self.transcript(generated["conversationId"]))

    def test_second_client_resumes_the_conversation_on_the_other_replica(self):
        generated = self.generate(replica=0)
        self.start_online("first", 0, token=generated["token"])
        first_user = jwt.decode(generated["token"], options={"verify_signature": False})["user"]
        for text in ("one", "two"):
            posted_id, cid = self.send_message("first", text)
            self.wait_for_echo_and_reply("first", posted_id, text, cid, first_user)
        before = self.transcript(generated["conversationId"])
        self.assertEqual(len(before), 4)

        # Web Chat resumes with the conversationId and a token it kept: GET /conversations/{id}.
        self.start_online(
            "second", 1, token=generated["token"], conversationId=generated["conversationId"]
        )
        self.node.wait_for(
            lambda e: (
                e["event"] == "activity"
                and e["client"] == "second"
                and e["activity"]["id"] == before[-1]["id"]
            ),
            TIMEOUT,
            "the second client to replay the transcript",
        )
        self.assert_received_exactly("second", before)

        # Live both ways across the replicas, through the backplane.
        posted_id, cid = self.send_message("second", "three")
        for client in ("first", "second"):
            self.wait_for_echo_and_reply(client, posted_id, "three", cid, first_user)
        after = self.transcript(generated["conversationId"], replica=1)
        self.assertEqual(len(after), 6)
        self.assert_received_exactly("first", after)
        self.assert_received_exactly("second", after)

    def test_upload_a_file_and_fetch_it_back_by_its_content_url(self):
        generated = self.generate(replica=1)
        self.start_online("a", 0, token=generated["token"])
        content = secrets.token_bytes(2048) + "naïve ☃".encode()
        activity = {
            "type": "message",
            "from": {"id": "ignored"},
            "text": "a file",
            "channelData": {"clientActivityID": secrets.token_hex(6)},
        }
        posted_id = self.node.upload(
            "a", activity, [("report.bin", "application/octet-stream", content)]
        )
        echo = self.node.wait_activity(
            "a", lambda a: a["id"] == posted_id, TIMEOUT, "the upload's echo"
        )
        self.assertEqual(echo["text"], "a file")
        self.assertEqual(echo["channelData"], activity["channelData"])
        [attachment] = echo["attachments"]
        self.assertEqual(attachment["name"], "report.bin")
        self.assertEqual(attachment["contentType"], "application/octet-stream")
        content_url = attachment["contentUrl"]
        self.assertTrue(content_url.startswith(self.cluster.url(0) + "/"), content_url)

        token = generated["token"]
        status, _, body = self.node.fetch(content_url, {"Authorization": f"Bearer {token}"})
        self.assertEqual((status, body), (200, content))
        # From the other replica too (shared storage), and refused without a credential.
        other = content_url.replace(self.cluster.url(0), self.cluster.url(1))
        status, _, body = self.node.fetch(other, {"Authorization": f"Bearer {token}"})
        self.assertEqual((status, body), (200, content))
        status, _, _ = self.node.fetch(content_url)
        self.assertEqual(status, 401)
        self.node.wait_activity(
            "a", lambda a: a.get("replyToId") == posted_id, TIMEOUT, "the bot's reply to the upload"
        )

    def test_bad_secret_fails_to_connect(self):
        self.start("a", 0, secret="not-a-secret-" + secrets.token_urlsafe(16))
        self.node.wait_status("a", "FailedToConnect", TIMEOUT)
        error = self.node.wait_for(
            lambda e: e["event"] == "activity_error" and e["client"] == "a", TIMEOUT, "the error"
        )
        # The activity stream ends with the service's answer to POST /conversations.
        self.assertEqual(error["status"], 403, error)
        self.assertEqual(self.node.activities("a"), [])
        answer = self.node.try_post("a", {"type": "message", "text": "never sent"})
        self.assertEqual(answer["event"], "post_error")
        self.assertIn("failed to connect", answer["message"])

    def test_expired_token_fails_to_connect_starting_or_resuming(self):
        generated = self.generate()
        stale = expired(generated["token"])
        self.start("new", 0, token=stale)
        self.start("resume", 1, token=stale, conversationId=generated["conversationId"])
        for client in ("new", "resume"):
            self.node.wait_status(client, "FailedToConnect", TIMEOUT)
            error = self.node.wait_for(
                lambda e, c=client: e["event"] == "activity_error" and e["client"] == c,
                TIMEOUT,
                f"{client}'s error",
            )
            self.assertEqual(error["status"], 403, error)
            self.assertEqual(self.node.activities(client), [])
        # What the service answered, as the client saw it: 403 with code TokenExpired.
        status, body = self.cluster.http(
            1, "GET", f"/v3/directline/conversations/{generated['conversationId']}", token=stale
        )
        self.assertEqual((status, body["error"]["code"]), (403, "TokenExpired"))


class WebSocketModeTests(BothModes, DirectLineJSCase):
    web_socket = True


class PollingModeTests(BothModes, DirectLineJSCase):
    web_socket = False

    def start_online(self, client, replica, **options):
        super().start_online(client, replica, **options)
        self.assertEqual(self.node.sockets(client, "open"), [])


class ServerClosesTheSocketTests(DirectLineJSCase):
    """The server closes a quiet stream (idle timeout); the client reconnects by itself."""

    web_socket = True
    cluster_kind = "idle"

    def test_client_reconnects_and_receives_what_was_posted_while_away_exactly_once(self):
        generated = self.generate(replica=0)
        conversation_id = generated["conversationId"]
        user_id = jwt.decode(generated["token"], options={"verify_signature": False})["user"]
        self.start_online("a", 0, token=generated["token"])
        posted_id, cid = self.send_message("a", "before")
        _, reply = self.wait_for_echo_and_reply("a", posted_id, "before", cid, user_id)

        # Nothing more to say: the server closes the stream after IDLE_TIMEOUT seconds.
        closed = self.node.wait_for(
            lambda e: e["event"] == "socket" and e["client"] == "a" and e["state"] == "close",
            IDLE_TIMEOUT + TIMEOUT,
            "the server to close the idle stream",
        )
        self.assertEqual(closed["code"], 4408)

        # While the client waits to reconnect (3 s at least), others write through the
        # OTHER replica: a user's message (and so the echo bot's reply) and a bot API post.
        conversation = f"/v3/directline/conversations/{conversation_id}"
        status, body = self.cluster.http(
            1,
            "POST",
            conversation + "/activities",
            {"type": "message", "from": {"id": "someone-else"}, "text": "while you were away"},
            secret=self.secret,
        )
        self.assertEqual(status, 200, body)
        status, body = self.cluster.http(
            1,
            "POST",
            f"/v3/directline/bot/conversations/{conversation_id}/activities",
            {"type": "message", "text": "a proactive bot message"},
            secret=self.secret,
        )
        self.assertEqual(status, 200, body)
        self.assertEqual(len(self.node.sockets("a", "open")), 1, "reconnected too early to test")
        self.assertEqual([a["id"] for a in self.node.activities("a")], [posted_id, reply["id"]])
        missed = self.wait_for_transcript(conversation_id, 5)[2:]

        # The client reconnects by itself, from its watermark, and gets exactly what it missed.
        self.node.wait_activity(
            "a", lambda a: a["id"] == missed[-1]["id"], RECONNECT_TIMEOUT, "what it missed"
        )
        reopened = self.node.sockets("a", "open")[1]
        self.assertIn(f"/conversations/{conversation_id}/stream?", reopened["url"])
        self.assertIn(f"watermark={sequence(reply['id'])}&", reopened["url"])
        self.assert_received_exactly("a", self.transcript(conversation_id))

        # Live again on the new socket: one more message arrives once, in order.
        posted_id, cid = self.send_message("a", "after")
        self.wait_for_echo_and_reply("a", posted_id, "after", cid, user_id)
        self.assert_received_exactly("a", self.transcript(conversation_id))
