"""POST /conversations (start) and GET /conversations/{id} (reconnect), and the streamUrl."""

from urllib.parse import parse_qs, urlsplit

from django.test import TestCase

from webchat.conf import settings as webchat_settings
from webchat.models import Conversation
from webchat.tokens import read_token
from webchat.transcript import append_activity

from .directline_support import BASE, DirectLineMixin, bearer, expired_token


class StartConversationTests(DirectLineMixin, TestCase):
    def assertStreamUrl(self, url, conversation_id, watermark, scheme="ws", host="testserver"):
        parts = urlsplit(url)
        self.assertEqual(parts.scheme, scheme)
        self.assertEqual(parts.netloc, host)
        self.assertEqual(parts.path, f"{BASE}/conversations/{conversation_id}/stream")
        query = parse_qs(parts.query, keep_blank_values=True)
        self.assertEqual(set(query), {"watermark", "t"})
        self.assertEqual(query["watermark"], [watermark])
        claims = read_token(query["t"][0])
        self.assertEqual(claims.conversation_id, conversation_id)
        return query["t"][0]

    def test_start_with_the_secret_creates_a_conversation(self):
        response = self.post_json("/conversations", {"user": {"id": "u7"}}, self.secret)
        self.assertEqual(response.status_code, 201)
        body = response.json()
        self.assertEqual(set(body), {"conversationId", "token", "expires_in", "streamUrl"})
        self.assertEqual(body["expires_in"], webchat_settings.token_ttl)
        conversation = Conversation.objects.get(pk=body["conversationId"])
        self.assertEqual(conversation.tenant, self.tenant)
        self.assertEqual(read_token(body["token"]).user_id, "u7")
        stream_token = self.assertStreamUrl(body["streamUrl"], conversation.id, "")
        self.assertEqual(stream_token, body["token"])

    def test_start_as_directlinejs_sends_it(self):
        # directlinejs posts {"user": {"id": undefined}} -> {"user": {}} when it has no user id.
        response = self.post_json("/conversations", {"user": {}}, self.secret)
        self.assertEqual(response.status_code, 201)
        self.assertTrue(read_token(response.json()["token"]).user_id.startswith("dl_"))

    def test_start_with_a_token_from_generate_starts_that_conversation(self):
        generated = self.post_json(
            "/tokens/generate", {"user": {"id": "u8", "name": "Bo"}}, self.secret
        ).json()
        count = Conversation.objects.count()
        # A different user in the body cannot override the token's.
        response = self.post_json("/conversations", {"user": {"id": "eve"}}, generated["token"])
        self.assertEqual(response.status_code, 201)
        body = response.json()
        self.assertEqual(body["conversationId"], generated["conversationId"])
        self.assertEqual(Conversation.objects.count(), count)
        claims = read_token(body["token"])
        self.assertEqual((claims.user_id, claims.user_name), ("u8", "Bo"))
        self.assertStreamUrl(body["streamUrl"], generated["conversationId"], "")

    def test_start_with_no_body(self):
        response = self.client.generic("POST", BASE + "/conversations", **bearer(self.secret))
        self.assertEqual(response.status_code, 201)

    def test_stream_url_honours_host_and_scheme(self):
        cases = [
            ({"HTTP_HOST": "localhost:8001"}, "ws", "localhost:8001"),
            ({"HTTP_HOST": "localhost", "wsgi.url_scheme": "https"}, "wss", "localhost"),
            ({"HTTP_X_FORWARDED_PROTO": "https"}, "wss", "testserver"),
            ({"HTTP_X_FORWARDED_PROTO": "https, http"}, "wss", "testserver"),
            (
                {
                    "HTTP_X_FORWARDED_PROTO": "http",
                    "HTTP_HOST": "testserver",
                    "wsgi.url_scheme": "https",
                },
                "ws",
                "testserver",
            ),
        ]
        for extra, scheme, host in cases:
            with self.subTest(extra=extra):
                response = self.post_json("/conversations", {}, self.secret, **extra)
                body = response.json()
                self.assertStreamUrl(body["streamUrl"], body["conversationId"], "", scheme, host)

    def test_start_with_expired_token_is_403(self):
        token = expired_token(self.tenant.pk, self.conversation.id)
        response = self.post_json("/conversations", {}, token)
        self.assertDirectLineError(response, 403, "TokenExpired")

    def test_start_with_token_of_deleted_conversation_is_404(self):
        self.conversation.delete()
        response = self.post_json("/conversations", {}, self.token)
        self.assertDirectLineError(response, 404, "NotFound")

    def test_start_bad_bodies_write_nothing(self):
        count = Conversation.objects.count()
        for data, content_type, status in [
            ("{", "application/json", 400),
            ('{"user": []}', "application/json", 400),
            ("user=u1", "application/x-www-form-urlencoded", 415),
        ]:
            with self.subTest(data=data):
                response = self.client.post(
                    BASE + "/conversations",
                    data=data,
                    content_type=content_type,
                    **bearer(self.secret),
                )
                self.assertDirectLineError(response, status)
        self.assertEqual(Conversation.objects.count(), count)


class GetConversationTests(DirectLineMixin, TestCase):
    def setUp(self):
        super().setUp()
        for text in ("a", "b", "c"):
            append_activity(self.conversation, {"type": "message", "text": text})

    def test_reconnect_returns_a_new_token_and_a_stream_url_from_the_watermark(self):
        response = self.get(f"/conversations/{self.conversation.id}?watermark=2", self.token)
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(body["conversationId"], self.conversation.id)
        self.assertEqual(body["expires_in"], webchat_settings.token_ttl)
        claims = read_token(body["token"])
        self.assertEqual((claims.user_id, claims.user_name), ("user-1", "Ann"))
        parts = urlsplit(body["streamUrl"])
        self.assertEqual(parts.scheme, "ws")
        query = parse_qs(parts.query, keep_blank_values=True)
        self.assertEqual(query["watermark"], ["2"])
        self.assertEqual(query["t"], [body["token"]])

    def test_reconnect_without_watermark_streams_from_the_start(self):
        for suffix in ("", "?watermark="):
            with self.subTest(suffix=suffix):
                response = self.get(f"/conversations/{self.conversation.id}{suffix}", self.token)
                query = parse_qs(urlsplit(response.json()["streamUrl"]).query, True)
                self.assertEqual(query["watermark"], [""])

    def test_reconnect_with_the_secret(self):
        response = self.get(f"/conversations/{self.conversation.id}?watermark=3", self.secret)
        self.assertEqual(response.status_code, 200)
        claims = read_token(response.json()["token"])
        self.assertEqual(claims.conversation_id, self.conversation.id)
        self.assertEqual(claims.tenant_id, str(self.tenant.pk))

    def test_reconnect_with_bad_watermarks_is_400(self):
        for watermark in ("abc", "-1", "1.5", "+1", " 1", "4", "99999999999999999999", "0x1"):
            with self.subTest(watermark=watermark):
                response = self.client.get(
                    f"{BASE}/conversations/{self.conversation.id}",
                    {"watermark": watermark},
                    **bearer(self.token),
                )
                self.assertDirectLineError(response, 400, "BadArgument")

    def test_reconnect_errors(self):
        other = Conversation.objects.create(tenant=self.tenant)
        foreign = Conversation.objects.create(tenant=self.other_tenant)
        expired = expired_token(self.tenant.pk, self.conversation.id)
        cases = [
            (f"/conversations/{other.id}", self.token, 403, "Forbidden"),
            (f"/conversations/{foreign.id}", self.token, 403, "Forbidden"),
            (f"/conversations/{foreign.id}", self.secret, 404, "NotFound"),
            ("/conversations/no-such-conversation", self.secret, 404, "NotFound"),
            (f"/conversations/{self.conversation.id}", expired, 403, "TokenExpired"),
        ]
        for path, credential, status, code in cases:
            with self.subTest(path=path, status=status):
                self.assertDirectLineError(self.get(path, credential), status, code)
