"""End to end: the real botframework-directlinejs keeps a conversation for 2 hours of its own
time through sliding renewal, against two daphne replicas with a 2-second token TTL.

The client runs as it ships, with its rxjs clock 180 times faster (driver.js ``timeScale``):
its 15-minute token refresh comes every 5 s and its 20-second stream ping every 0.11 s, while
the server's clock, Redis and database are real. Every token it holds is expired most of the
time, so each refresh and most posts present an expired token, accepted because the
conversation is alive. The bounds hold too: the maximum session lifetime and revocation end
the conversation for the client (its status turns ExpiredToken).
"""

import secrets
import time
from pathlib import Path

import jwt
from django.test import SimpleTestCase

from tests.support.directlinejs import DirectLineJS, require_node
from tests.support.replicas import Cluster, redis_unavailable

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "e2e-token-renewal"
TIMEOUT = 30
TIME_SCALE = 180  # client seconds per real second
TTL = 2  # tests/short_token_settings.py
CLIENT_HOURS = 2
POST_EVERY = 600  # client seconds: a message every 10 minutes of the client's time
SIGNING_KEY = secrets.token_urlsafe(32)

_clusters = {}


def cluster(kind: str) -> Cluster:
    """``long``: a 2-second TTL and the default session bound; ``bounded``: also a 12-second
    maximum session lifetime."""
    if kind not in _clusters:
        problem = redis_unavailable()
        if problem:
            raise AssertionError(f"the end-to-end tests need Redis: {problem}")
        env = {
            "WEBCHAT_TOKEN_SIGNING_KEY": SIGNING_KEY,
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "tests.short_token_settings",
        }
        if kind == "bounded":
            env["WEBCHAT_TOKEN_MAX_SESSION_SECS"] = "12"
        _clusters[kind] = Cluster(database="sqlite", extra_env=env).start(2)
    return _clusters[kind]


def tearDownModule():
    while _clusters:
        _clusters.popitem()[1].stop()


def claims_of(token: str) -> dict:
    return jwt.decode(token, SIGNING_KEY, algorithms=["HS256"], options={"verify_exp": False})


class TokenRenewalTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_node()

    def setUp(self):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.node = DirectLineJS(log_path=ARTIFACTS / f"{self.id().rsplit('.', 1)[-1]}.log")
        self.addCleanup(self.node.close)

    def connect(self, kind: str, client="a") -> tuple[Cluster, str, dict]:
        """A tenant, a token from replica 1 (as the tenant's backend would get it), and the
        client online on replica 0 with its stream open."""
        replicas = cluster(kind)
        tenant = f"renewal-{secrets.token_hex(4)}"
        secret = replicas.create_tenant(tenant)
        status, generated = replicas.http(
            1, "POST", "/v3/directline/tokens/generate", {}, secret=secret
        )
        self.assertEqual(status, 200, generated)
        self.assertEqual(generated["expires_in"], TTL)
        self.node.start(
            client,
            domain=replicas.replicas[0].http_url + "/v3/directline",
            token=generated["token"],
            webSocket=True,
            timeScale=TIME_SCALE,
        )
        self.node.wait_status(client, "Online", TIMEOUT)
        self.node.wait_for(
            lambda e: e["event"] == "socket" and e["client"] == client and e["state"] == "open",
            TIMEOUT,
            "the stream to open",
        )
        return replicas, tenant, generated

    def say(self, client: str, text: str) -> dict:
        """Post as Web Chat does; return the driver's answer (posted or post_error)."""
        return self.node.try_post(
            client,
            {
                "type": "message",
                "from": {"id": "ignored"},
                "text": text,
                "channelData": {"clientActivityID": secrets.token_hex(6)},
            },
        )

    def wait_despite_refusals(self, predicate, timeout: float, what: str) -> dict:
        """Like ``wait_for``, but the client's uncaught 403 (its refresh loop has no error
        handler, so a refused refresh surfaces as the driver's "fatal") is expected here;
        any other fatal still fails."""
        deadline = time.monotonic() + timeout
        while True:
            for event in list(self.node.events):
                if event["event"] == "fatal" and "ajax error 403" not in event["message"]:
                    raise AssertionError(f"the Node driver failed: {event['message']}")
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def token_at(self, client: str, first: str, moment: float) -> str:
        """The token the client held at wall-clock ``moment`` (seconds)."""
        held = first
        for event in self.node.of(client, "token"):
            if event["at"] / 1000 <= moment:
                held = event["token"]
        return held

    def test_a_conversation_stays_usable_for_two_hours_of_client_time(self):
        replicas, _, generated = self.connect("long")
        started = time.time()
        posts = []
        for minute in range(0, CLIENT_HOURS * 60 + 1, POST_EVERY // 60):
            # Wait for this message's place on the client's clock.
            time.sleep(max(0.0, started + minute * 60 / TIME_SCALE - time.time()))
            text = f"minute {minute}"
            posted_at = time.time()
            answer = self.say("a", text)
            self.assertEqual(answer["event"], "posted", f"{text}: {answer}")
            posts.append((posted_at, answer["id"]))
            self.node.wait_activity(
                "a", lambda a, i=answer["id"]: a.get("replyToId") == i, TIMEOUT, f"reply, {text}"
            )
        client_seconds = (time.time() - started) * TIME_SCALE
        self.assertGreaterEqual(client_seconds, CLIENT_HOURS * 3600)

        statuses = self.node.statuses("a")
        self.assertNotIn("ExpiredToken", statuses)
        self.assertNotIn("FailedToConnect", statuses)
        # One stream all along: its token expired long ago, the socket does not care.
        self.assertEqual(len(self.node.sockets("a", "open")), 1)
        self.assertEqual(self.node.sockets("a", "close"), [])

        # The client adopted the token of its start, then refreshed every 15 minutes of its
        # time, each time with an expired token.
        adopted = self.node.of("a", "token")
        refreshed = adopted[1:]
        self.assertGreaterEqual(len(refreshed), CLIENT_HOURS * 4 - 2, adopted)
        held = [generated["token"]] + [e["token"] for e in adopted]
        for before, event in zip(held[1:], refreshed, strict=False):
            self.assertGreater(event["at"] / 1000, claims_of(before)["exp"])
        sessions = {claims_of(token)["ses"] for token in held}
        self.assertEqual(sessions, {claims_of(generated["token"])["ses"]})

        # Posts went through with the expired token the client held at the time.
        expired_posts = [
            posted_at
            for posted_at, _ in posts
            if claims_of(self.token_at("a", generated["token"], posted_at))["exp"] < posted_at
        ]
        self.assertGreaterEqual(len(expired_posts), 1, posts)
        # And once more on purpose: wait for the held token to expire, then post.
        while True:
            current = self.token_at("a", generated["token"], time.time())
            if claims_of(current)["exp"] < time.time():
                break
            time.sleep(0.1)
        answer = self.say("a", "with an expired token")
        self.assertEqual(answer["event"], "posted", answer)
        self.assertNotEqual(answer["id"], "retry")

        # The other replica agrees the conversation is alive: it renews the expired token.
        latest = held[-1]
        time.sleep(max(0.0, claims_of(latest)["exp"] + 0.1 - time.time()))
        status, body = replicas.http(1, "POST", "/v3/directline/tokens/refresh", token=latest)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["conversationId"], generated["conversationId"])

    def test_the_session_ends_at_its_maximum_lifetime(self):
        replicas, _, generated = self.connect("bounded")
        ses = claims_of(generated["token"])["ses"]
        # 12 s of session: the client's 5-second refreshes work until then, then one is
        # refused (403) and the client stops. Its refresh loop has no error handler, so the
        # refusal also surfaces as an uncaught "ajax error 403" (the driver's "fatal").
        self.wait_despite_refusals(
            lambda e: e["event"] == "status" and e["status"] == "ExpiredToken",
            12 + TIMEOUT,
            "the client to stop (ExpiredToken)",
        )
        self.assertGreaterEqual(time.time(), ses + 12)
        adopted = self.node.of("a", "token")
        self.assertGreaterEqual(len(adopted), 2, adopted)
        for event in adopted:
            self.assertLessEqual(claims_of(event["token"])["exp"], ses + 12)
        uncaught = [e["message"] for e in self.node.events if e["event"] == "fatal"]
        self.assertTrue(all("ajax error 403" in m for m in uncaught), uncaught)
        conversation = generated["conversationId"]
        status, body = replicas.http(
            1,
            "POST",
            f"/v3/directline/conversations/{conversation}/activities",
            {"type": "message", "text": "too late"},
            token=adopted[-1]["token"],
        )
        self.assertEqual(status, 403, body)
        status, body = replicas.http(
            1, "POST", "/v3/directline/tokens/refresh", token=generated["token"]
        )
        self.assertEqual(status, 403, body)
        self.assertEqual(body["error"]["code"], "TokenExpired")
        self.assertIn("maximum lifetime", body["error"]["message"])

    def test_revoking_the_tenants_tokens_ends_the_conversation_for_the_client(self):
        replicas, tenant, generated = self.connect("long")
        answer = self.say("a", "before")
        self.assertEqual(answer["event"], "posted", answer)
        replicas.manage("create_tenant", tenant, "--revoke-tokens")
        # The open stream checks its session on the client's pings and closes with 4419; the
        # client's reconnect is refused and it stops (ExpiredToken).
        closed = self.wait_despite_refusals(
            lambda e: e["event"] == "socket" and e["state"] == "close", TIMEOUT, "a close"
        )
        self.assertEqual(closed["code"], 4419)
        self.wait_despite_refusals(
            lambda e: e["event"] == "status" and e["status"] == "ExpiredToken",
            TIMEOUT,
            "the client to stop (ExpiredToken)",
        )
        # Its token is refused everywhere (a post through the client would race its own
        # refresh loop, whose refusal the client leaves uncaught: asked over HTTP instead).
        conversation = generated["conversationId"]
        status, body = replicas.http(
            1, "POST", f"/v3/directline/conversations/{conversation}/activities",
            {"type": "message", "text": "after"}, token=generated["token"],
        )  # fmt: skip
        self.assertEqual(status, 403, body)
        status, body = replicas.http(
            0, "POST", "/v3/directline/tokens/refresh", token=generated["token"]
        )
        self.assertEqual(status, 403, body)
        self.assertIn("revoked", body["error"]["message"])
