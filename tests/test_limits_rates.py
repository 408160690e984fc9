"""Rate limits on the Direct Line API and the stream, pushed past, against real Redis."""

import time
import uuid

import redis
from asgiref.sync import sync_to_async
from django.core.checks import run_checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import SimpleTestCase, TestCase, override_settings

from tests.support.redis_server import (
    SHARED_URL,
    RedisServer,
    closed_port_url,
    requires_shared_redis,
)
from tests.support.streams import (
    assert_refused,
    communicator,
    make_conversation,
    stream_path,
    token_for,
)
from webchat import throttle
from webchat.conf import RATE_KEYS
from webchat.consumers import CloseCode
from webchat.models import Activity, Conversation
from webchat.ratelimit import MemoryLimiter, Rate, RedisLimiter
from webchat.tokens import issue_token

from .directline_support import DirectLineMixin

#: Every rate off: each test turns on the one it pushes past.
NO_RATES = dict.fromkeys(RATE_KEYS)


def metric(name, **labels):
    from webchat.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


class RedisLimitsMixin:
    """Turns the rate limits on (``rates``, the rest off), on the shared Redis under a
    prefix of this test's own."""

    backend = "redis"

    def limits(self, **rates):
        self.prefix = f"test:rate:{uuid.uuid4()}"
        options = {
            **NO_RATES,
            "BACKEND": self.backend,
            "REDIS_URL": SHARED_URL,
            "KEY_PREFIX": self.prefix,
            **rates,
        }
        self.enterContext(override_settings(WEBCHAT_LIMITS=options))
        if self.backend == "redis":
            self.addCleanup(self._delete_keys)

    def _delete_keys(self):
        client = redis.Redis.from_url(SHARED_URL)
        try:
            keys = list(client.scan_iter(f"{self.prefix}:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@requires_shared_redis
class PostLimitTests(RedisLimitsMixin, DirectLineMixin, TestCase):
    path = property(lambda self: f"/conversations/{self.conversation.id}/activities")

    def send(self, credential, ip="198.51.100.1", path=None, **extra):
        return self.post_json(
            path or self.path, {"type": "message", "text": "hi"}, credential, REMOTE_ADDR=ip,
            **extra,
        )

    def assert_429(self, response, scope):
        self.assertDirectLineError(response, 429, "TooManyRequests")
        self.assertIn(f"for this {scope}", response.json()["error"]["message"])
        self.assertGreaterEqual(int(response["Retry-After"]), 1)

    def test_per_token_and_a_refreshed_token_does_not_reset_it(self):
        self.limits(POSTS_PER_TOKEN=(3, 60))
        before = metric("webchat_rate_limited_total", action="posts", scope="token")
        for _ in range(3):
            self.assertEqual(self.send(self.token).status_code, 200)
        refused = self.send(self.token)
        self.assert_429(refused, "token")
        self.assertLessEqual(int(refused["Retry-After"]), 20)
        # A browser page may read it cross-origin.
        cors = self.send(self.token, HTTP_ORIGIN="https://www.example.com")
        self.assertIn("retry-after", cors["Access-Control-Expose-Headers"].lower())
        # A new token for the same conversation and user is the same limit.
        again = issue_token(self.tenant.pk, self.conversation.id, "user-1", "Ann")
        self.assert_429(self.send(again), "token")
        self.assertEqual(Activity.objects.filter(conversation=self.conversation).count(), 3)
        self.assertEqual(
            metric("webchat_rate_limited_total", action="posts", scope="token") - before, 3
        )
        # Another user of the conversation has a limit of its own.
        other_user = issue_token(self.tenant.pk, self.conversation.id, "user-2")
        self.assertEqual(self.send(other_user).status_code, 200)

    def test_per_ip(self):
        self.limits(POSTS_PER_IP=(4, 60))
        tokens = [
            issue_token(self.tenant.pk, self.conversation.id, f"visitor-{n}") for n in range(5)
        ]
        for token in tokens[:4]:
            self.assertEqual(self.send(token, ip="203.0.113.9").status_code, 200)
        self.assert_429(self.send(tokens[4], ip="203.0.113.9"), "ip")
        self.assertEqual(self.send(tokens[4], ip="203.0.113.10").status_code, 200)

    def test_per_tenant_with_the_secret_too(self):
        self.limits(POSTS_PER_TENANT=(3, 60))
        other = Conversation.objects.create(tenant=self.tenant)
        other_token = issue_token(self.tenant.pk, other.id, "user-9")
        self.assertEqual(self.send(self.token).status_code, 200)
        self.assertEqual(self.send(other_token, path=f"/conversations/{other.id}/activities")
                         .status_code, 200)  # fmt: skip
        body = {"type": "message", "text": "x", "from": {"id": "u"}}
        self.assertEqual(self.post_json(self.path, body, self.secret).status_code, 200)
        self.assert_429(self.post_json(self.path, body, self.secret), "tenant")
        # Tenant B is not affected.
        foreign = Conversation.objects.create(tenant=self.other_tenant)
        foreign_token = issue_token(self.other_tenant.pk, foreign.id, "user-1")
        path = f"/conversations/{foreign.id}/activities"
        self.assertEqual(self.send(foreign_token, path=path).status_code, 200)

    def test_uploads_per_token(self):
        self.limits(UPLOADS_PER_TOKEN=(2, 60))
        path = f"/v3/directline/conversations/{self.conversation.id}/upload?userId=user-1"

        def upload():
            return self.client.post(
                path,
                {"file": SimpleUploadedFile("a.txt", b"hello", content_type="text/plain")},
                HTTP_AUTHORIZATION=f"Bearer {self.token}",
            )

        self.assertEqual(upload().status_code, 200)
        self.assertEqual(upload().status_code, 200)
        self.assert_429(upload(), "token")
        # Posting is another action with its own limits.
        self.assertEqual(self.send(self.token).status_code, 200)

    def test_conversations_per_tenant_generate_and_start(self):
        self.limits(CONVERSATIONS_PER_TENANT=(5, 60))
        before = Conversation.objects.count()
        for _ in range(4):
            response = self.post_json("/tokens/generate", {}, self.secret)
            self.assertEqual(response.status_code, 200)
        self.assertEqual(self.post_json("/conversations", {}, self.secret).status_code, 201)
        self.assert_429(self.post_json("/tokens/generate", {}, self.secret), "tenant")
        self.assert_429(self.post_json("/conversations", {}, self.secret), "tenant")
        self.assertEqual(Conversation.objects.count(), before + 5)
        # A token from generate starts its own conversation: nothing is created, no limit.
        self.assertEqual(self.post_json("/conversations", {}, self.token).status_code, 201)
        self.assertEqual(self.post_json("/tokens/generate", {}, self.other_secret).status_code,
                         200)  # fmt: skip

    def test_conversations_per_ip(self):
        self.limits(CONVERSATIONS_PER_IP=(2, 60))
        for _ in range(2):
            self.assertEqual(
                self.post_json("/tokens/generate", {}, self.secret, REMOTE_ADDR="192.0.2.7")
                .status_code, 200
            )  # fmt: skip
        refused = self.post_json("/tokens/generate", {}, self.other_secret, REMOTE_ADDR="192.0.2.7")
        self.assert_429(refused, "ip")

    def test_the_seeds_public_token_endpoint_creates_conversations_within_the_limits(self):
        # Anyone may call a public tenant's token endpoint: its conversations count against
        # the tenant's and the caller's IP limits like tokens/generate's.
        self.enterContext(override_settings(WEBCHAT_SEED={"PUBLIC_TOKEN_TENANTS": ["tenant-a"]}))
        self.limits(CONVERSATIONS_PER_TENANT=(3, 60), CONVERSATIONS_PER_IP=(2, 60))

        def token(ip, **headers):
            return self.client.post("/v1/messaging/webchat/tenant-a/token", "{}",
                                    content_type="application/json", REMOTE_ADDR=ip,
                                    **headers)  # fmt: skip

        before = Conversation.objects.count()
        for _ in range(2):
            response = token("192.0.2.8")
            self.assertEqual(response.status_code, 200, response.content)
        self.assert_429(token("192.0.2.8"), "ip")
        self.assertEqual(token("192.0.2.9").status_code, 200)
        self.assert_429(token("192.0.2.10"), "tenant")
        # With the secret, the same endpoint shares the tenant's limit.
        self.assert_429(token("192.0.2.11", HTTP_AUTHORIZATION=f"Bearer {self.secret}"), "tenant")
        self.assertEqual(Conversation.objects.count(), before + 3)


class MemoryPostLimitTests(PostLimitTests):
    """The same limits in this process (the memory notifier's development setup)."""

    backend = "memory"

    def test_auto_is_memory_with_the_memory_notifier(self):
        with override_settings(WEBCHAT_LIMITS={"BACKEND": "auto"}):
            self.assertIsNone(throttle.shared_url())
            self.assertIsInstance(throttle.get_limiter(), MemoryLimiter)


@requires_shared_redis
class AutoBackendTests(SimpleTestCase):
    @override_settings(
        WEBCHAT_NOTIFIER={"BACKEND": "redis", "URL": SHARED_URL}, WEBCHAT_LIMITS={}
    )
    def test_auto_is_redis_with_the_redis_notifier(self):
        self.assertEqual(throttle.shared_url(), SHARED_URL)
        self.assertIsInstance(throttle.get_limiter(), throttle.FallbackLimiter)


class RedisDownTests(RedisLimitsMixin, DirectLineMixin, TestCase):
    """Redis does not answer: each replica limits on its own, with a warning and a metric."""

    def test_falls_back_to_this_process_s_limits(self):
        self.limits(POSTS_PER_TOKEN=(2, 60))
        self.enterContext(override_settings(WEBCHAT_LIMITS={
            **NO_RATES, "BACKEND": "redis", "REDIS_URL": closed_port_url(),
            "POSTS_PER_TOKEN": (2, 60), "REDIS_RETRY": 60,
        }))  # fmt: skip
        path = f"/conversations/{self.conversation.id}/activities"
        before = metric("webchat_rate_limit_redis_errors_total")
        with self.assertLogs("webchat.throttle", "WARNING") as logs:
            statuses = [
                self.post_json(path, {"type": "message"}, self.token).status_code
                for _ in range(3)
            ]
        self.assertEqual(statuses, [200, 200, 429])
        # One warning for the outage, not one per request; no password in it.
        self.assertEqual(len(logs.output), 1)
        self.assertIn("limits on its own", logs.output[0])
        self.assertEqual(metric("webchat_rate_limit_redis_errors_total") - before, 3)


class RedisOutageTests(SimpleTestCase):
    """A private Redis stops and comes back: each replica limits alone, then Redis again."""

    def test_fallback_then_back_to_redis(self):
        server = RedisServer.start_for(self)
        client = server.client()
        self.addCleanup(client.close)
        url = server.url
        limiter = throttle.FallbackLimiter(
            RedisLimiter(redis.Redis.from_url(url, socket_timeout=0.5), "t"),
            MemoryLimiter(), url, retry_after=0.2,
        )  # fmt: skip
        self.addCleanup(limiter.close)
        rate = Rate(3, 60)
        self.assertTrue(limiter.hit([("k", rate)]).allowed)
        self.assertTrue(client.exists("t:k"))
        server.stop()
        with self.assertLogs("webchat.throttle", "WARNING") as logs:
            # This replica's own limit: 3 more (it never saw the first), then refused.
            allowed = [limiter.hit([("k", rate)]).allowed for _ in range(4)]
            self.assertEqual(allowed, [True, True, True, False])
            server.start()
            time.sleep(0.25)
            # Back on Redis, restarted empty (no persistence): a fresh limit, in Redis again.
            allowed = [limiter.hit([("k", rate)]).allowed for _ in range(4)]
        self.assertEqual(allowed, [True, True, True, False])
        self.assertTrue(client.exists("t:k"))
        self.assertIn("failed", logs.output[0])
        self.assertIn("answers again", logs.output[-1])


class SettingsTests(SimpleTestCase):
    def errors(self):
        return [e for e in run_checks() if e.id == "webchat.E040"]

    def test_defaults_pass(self):
        self.assertEqual(self.errors(), [])

    def test_bad_values_are_reported(self):
        for value in (
            {"POSTS_PER_TOKEN": (0, 10)},
            {"POSTS_PER_TOKEN": 5},
            {"POSTS_PER_TOKN": (1, 1)},
            {"BACKEND": "memcached"},
            {"UPLOAD_QUOTA_BYTES": -1},
            {"ENABLED": "yes"},
            {"REDIS_URL": "http://nope"},
            {"REDIS_TIMEOUT": 0},
        ):
            with self.subTest(value=value), override_settings(WEBCHAT_LIMITS=value):
                [error] = self.errors()
                self.assertIn("WEBCHAT_LIMITS", error.msg)

    @override_settings(WEBCHAT_LIMITS={"ENABLED": False})
    def test_disabled_means_no_limit(self):
        self.assertEqual(throttle.limits_for("posts", "1", "1.2.3.4"), [])


@requires_shared_redis
class SocketLimitTests(RedisLimitsMixin, TestCase):
    def setUp(self):
        self.conversation = make_conversation()

    def socket(self, conversation=None, user="user-1", ip="198.51.100.1"):
        conversation = conversation or self.conversation
        comm = communicator(stream_path(conversation.id, token_for(conversation, user)))
        comm.scope["client"] = (ip, 50000)
        return comm

    async def connected(self, comm):
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        self.assertTrue(await comm.receive_nothing(0.05))
        return comm

    async def test_socket_opens_per_token(self):
        self.limits(SOCKETS_PER_TOKEN=(2, 60))
        first = await self.connected(self.socket())
        await first.disconnect()
        second = await self.connected(self.socket())
        await second.disconnect()
        with self.assertLogs("webchat.consumers", "INFO") as logs:
            await assert_refused(self, self.socket(), CloseCode.TOO_MANY_SOCKETS)
        self.assertIn("too many sockets for this token, retry after", logs.output[0])
        other = await self.connected(self.socket(user="user-2"))
        await other.disconnect()

    async def test_socket_opens_per_ip(self):
        self.limits(SOCKETS_PER_IP=(2, 60))
        others = [await sync_to_async(make_conversation)() for _ in range(3)]
        opened = [await self.connected(self.socket(c, ip="203.0.113.5")) for c in others[:2]]
        await assert_refused(self, self.socket(others[2], ip="203.0.113.5"),
                             CloseCode.TOO_MANY_SOCKETS)  # fmt: skip
        opened.append(await self.connected(self.socket(others[2], ip="203.0.113.6")))
        for comm in opened:
            await comm.disconnect()


class SocketCapTests(TestCase):
    """Open sockets per user and per IP on this replica: many tokens from one visitor do not
    take the tenant's sockets from its other users (the 200 tokens x 5 sockets finding)."""

    def socket(self, conversation, user, ip):
        comm = communicator(stream_path(conversation.id, token_for(conversation, user)))
        comm.scope["client"] = (ip, 50000)
        return comm

    async def connected(self, comm):
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        self.assertTrue(await comm.receive_nothing(0.05))
        return comm

    @override_settings(WEBCHAT_STREAM={"MAX_SOCKETS_PER_IP": 6, "MAX_SOCKETS_PER_TENANT": 8})
    async def test_one_ip_cannot_take_the_tenant_s_sockets(self):
        conversations = [await sync_to_async(make_conversation)() for _ in range(4)]
        attacker = []
        for n, conversation in enumerate(conversations):
            for _ in range(2 if n < 3 else 0):
                attacker.append(await self.connected(self.socket(conversation, f"a{n}", "6.6.6.6")))
        with self.assertLogs("webchat.consumers", "INFO") as logs:
            await assert_refused(self, self.socket(conversations[3], "a3", "6.6.6.6"),
                                 CloseCode.TOO_MANY_SOCKETS)  # fmt: skip
        self.assertIn("MAX_SOCKETS_PER_IP", logs.output[0])
        # The tenant's real users still get in.
        users = [await self.connected(self.socket(conversations[3], f"u{n}", f"10.0.0.{n}"))
                 for n in range(2)]  # fmt: skip
        for comm in attacker + users:
            await comm.disconnect()

    @override_settings(WEBCHAT_STREAM={"MAX_SOCKETS_PER_USER": 2})
    async def test_sockets_per_user(self):
        conversations = [await sync_to_async(make_conversation)() for _ in range(3)]
        opened = [await self.connected(self.socket(c, "same-user", "10.1.1.1"))
                  for c in conversations[:2]]  # fmt: skip
        with self.assertLogs("webchat.consumers", "INFO") as logs:
            await assert_refused(self, self.socket(conversations[2], "same-user", "10.1.1.2"),
                                 CloseCode.TOO_MANY_SOCKETS)  # fmt: skip
        self.assertIn("MAX_SOCKETS_PER_USER", logs.output[0])
        await opened.pop().disconnect()
        opened.append(await self.connected(self.socket(conversations[2], "same-user", "10.1.1.2")))
        for comm in opened:
            await comm.disconnect()
