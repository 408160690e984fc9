"""POST /tokens/generate and POST /tokens/refresh."""

from django.test import TestCase

from webchat.conf import settings as webchat_settings
from webchat.models import Conversation
from webchat.tokens import read_token

from .directline_support import BASE, DirectLineMixin, bearer, expired_token


class GenerateTokenTests(DirectLineMixin, TestCase):
    def test_generate_creates_a_conversation_and_a_token_for_the_user(self):
        response = self.post_json(
            "/tokens/generate", {"user": {"id": "dl_ann", "name": "Ann"}}, self.secret
        )
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(set(body), {"conversationId", "token", "expires_in"})
        self.assertEqual(body["expires_in"], webchat_settings.token_ttl)
        conversation = Conversation.objects.get(pk=body["conversationId"])
        self.assertEqual(conversation.tenant, self.tenant)
        claims = read_token(body["token"])
        self.assertEqual(claims.conversation_id, conversation.id)
        self.assertEqual(claims.tenant_id, str(self.tenant.pk))
        self.assertEqual((claims.user_id, claims.user_name), ("dl_ann", "Ann"))

    def test_generate_without_body_names_a_new_user(self):
        # What a backend's bare `curl -X POST` sends: no body, no Content-Type.
        response = self.client.generic("POST", BASE + "/tokens/generate", **bearer(self.secret))
        self.assertEqual(response.status_code, 200)
        claims = read_token(response.json()["token"])
        self.assertTrue(claims.user_id.startswith("dl_"))
        self.assertIsNone(claims.user_name)

    def test_generate_with_empty_object_and_empty_user(self):
        for body in ({}, {"user": {}}):
            response = self.post_json("/tokens/generate", body, self.secret)
            self.assertEqual(response.status_code, 200)
            self.assertTrue(read_token(response.json()["token"]).user_id.startswith("dl_"))

    def test_each_generate_is_a_new_conversation(self):
        first = self.post_json("/tokens/generate", {}, self.secret).json()
        second = self.post_json("/tokens/generate", {}, self.secret).json()
        self.assertNotEqual(first["conversationId"], second["conversationId"])

    def test_generate_needs_the_secret_not_a_token(self):
        before = Conversation.objects.count()
        response = self.post_json("/tokens/generate", {}, self.token)
        self.assertDirectLineError(response, 403, "Forbidden")
        self.assertEqual(Conversation.objects.count(), before)

    def test_generate_bad_bodies_write_nothing(self):
        before = Conversation.objects.count()
        cases = [
            ("{not json", "application/json", 400, "BadSyntax"),
            ('{"user": "ann"}', "application/json", 400, "BadArgument"),
            ('{"user": {"id": 12}}', "application/json", 400, "BadArgument"),
            ('{"user": {"id": "' + "x" * 300 + '"}}', "application/json", 400, "BadArgument"),
            ("[1, 2]", "application/json", 400, "BadArgument"),
            ('{"user": {}}', "text/plain", 415, "UnsupportedMediaType"),
        ]
        for data, content_type, status, code in cases:
            with self.subTest(data=data[:30], content_type=content_type):
                response = self.client.post(
                    BASE + "/tokens/generate",
                    data=data,
                    content_type=content_type,
                    **bearer(self.secret),
                )
                self.assertDirectLineError(response, status, code)
        self.assertEqual(Conversation.objects.count(), before)

    def test_generate_get_is_405(self):
        response = self.get("/tokens/generate", self.secret)
        self.assertDirectLineError(response, 405, "MethodNotAllowed")
        self.assertEqual(response["Allow"], "POST")


class RefreshTokenTests(DirectLineMixin, TestCase):
    def test_refresh_returns_a_new_token_with_the_same_scope(self):
        response = self.client.post(BASE + "/tokens/refresh", **bearer(self.token))
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(set(body), {"conversationId", "token", "expires_in"})
        self.assertEqual(body["conversationId"], self.conversation.id)
        self.assertEqual(body["expires_in"], webchat_settings.token_ttl)
        old, new = read_token(self.token), read_token(body["token"])
        self.assertEqual(
            (new.tenant_id, new.conversation_id, new.user_id, new.user_name),
            (old.tenant_id, old.conversation_id, old.user_id, old.user_name),
        )
        self.assertGreaterEqual(new.expires_at, old.expires_at)

    def test_refresh_with_expired_token_is_403_token_expired(self):
        token = expired_token(self.tenant.pk, self.conversation.id)
        response = self.client.post(BASE + "/tokens/refresh", **bearer(token))
        self.assertDirectLineError(response, 403, "TokenExpired")

    def test_refresh_with_the_secret_is_refused(self):
        response = self.client.post(BASE + "/tokens/refresh", **bearer(self.secret))
        self.assertDirectLineError(response, 403, "Forbidden")

    def test_refresh_for_a_deleted_conversation_is_404(self):
        self.conversation.delete()
        response = self.client.post(BASE + "/tokens/refresh", **bearer(self.token))
        self.assertDirectLineError(response, 404, "NotFound")

    def test_refresh_with_a_garbage_token_is_403(self):
        response = self.client.post(BASE + "/tokens/refresh", **bearer("a.b.c"))
        self.assertDirectLineError(response, 403, "BadArgument")
