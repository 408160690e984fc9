"""GET and POST /conversations/{id}/activities: sending, polling, and every bad input."""

import json

from django.test import TestCase, override_settings

from webchat.models import Activity, Conversation
from webchat.tokens import issue_token
from webchat.transcript import append_activity

from .directline_support import BASE, DirectLineMixin, bearer, expired_token

TIMESTAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


class PostActivityTests(DirectLineMixin, TestCase):
    def path(self, conversation=None):
        return f"/conversations/{(conversation or self.conversation).id}/activities"

    def test_post_stores_the_activity_as_web_chat_needs_it(self):
        channel_data = {"clientActivityID": "1700000000000abc", "nested": {"a": [1, None, "x"]}}
        activity = {
            "type": "message",
            "text": "hello",
            "from": {"id": "someone-else", "name": "", "role": "bot"},
            "locale": "en-US",
            "id": "client-chosen",
            "timestamp": "1999-01-01T00:00:00Z",
            "channelData": channel_data,
        }
        response = self.post_json(self.path(), activity, self.token)
        self.assertEqual(response.status_code, 200)
        body = response.json()
        # A user's post always carries the renewed token (tests.test_token_lifecycle).
        self.assertEqual(body.keys(), {"id", "_directline"})
        self.assertEqual(body["id"], f"{self.conversation.id}|0000001")
        stored = Activity.objects.get(conversation=self.conversation, sequence=1).data
        self.assertEqual(stored["id"], body["id"])
        self.assertRegex(stored["timestamp"], TIMESTAMP)
        self.assertNotEqual(stored["timestamp"], "1999-01-01T00:00:00Z")
        self.assertEqual(stored["channelId"], "directline")
        self.assertEqual(stored["conversation"], {"id": self.conversation.id})
        # The token names the user: its id wins, and the role is always "user".
        self.assertEqual(stored["from"], {"id": "user-1", "name": "Ann", "role": "user"})
        self.assertEqual(stored["channelData"], channel_data)
        self.assertEqual((stored["text"], stored["locale"]), ("hello", "en-US"))
        self.conversation.refresh_from_db()
        self.assertEqual(self.conversation.watermark, 1)

    def test_post_without_from_takes_the_token_user(self):
        self.post_json(self.path(), {"type": "message", "text": "x"}, self.token)
        stored = Activity.objects.get(conversation=self.conversation).data
        self.assertEqual(stored["from"], {"id": "user-1", "name": "Ann", "role": "user"})

    def test_post_with_the_secret_needs_from_id(self):
        response = self.post_json(
            self.path(), {"type": "message", "from": {"id": "u9"}}, self.secret
        )
        self.assertEqual(response.status_code, 200)
        stored = Activity.objects.get(conversation=self.conversation).data
        self.assertEqual(stored["from"], {"id": "u9", "role": "user"})
        response = self.post_json(self.path(), {"type": "message"}, self.secret)
        self.assertDirectLineError(response, 400, "MissingProperty")
        self.assertEqual(self.activity_count(), 1)

    def test_sequence_ids_follow_each_other(self):
        ids = [
            self.post_json(self.path(), {"type": "typing"}, self.token).json()["id"]
            for _ in range(3)
        ]
        self.assertEqual(ids, [f"{self.conversation.id}|{n:07d}" for n in (1, 2, 3)])

    def test_charset_and_json_suffix_content_types(self):
        for content_type in ("application/json; charset=utf-8", "application/activity+json"):
            with self.subTest(content_type=content_type):
                response = self.client.post(
                    BASE + self.path(),
                    data=json.dumps({"type": "message"}),
                    content_type=content_type,
                    **bearer(self.token),
                )
                self.assertEqual(response.status_code, 200)


class BadActivityTests(DirectLineMixin, TestCase):
    """Every bad input gets its 4xx with a Direct Line error body and writes nothing."""

    def setUp(self):
        super().setUp()
        self.path = BASE + f"/conversations/{self.conversation.id}/activities"

    def post_raw(self, data, content_type="application/json", credential=None):
        return self.client.post(
            self.path, data=data, content_type=content_type, **bearer(credential or self.token)
        )

    def assertRefused(self, response, status, code=None):
        error = self.assertDirectLineError(response, status, code)
        self.assertEqual(self.activity_count(), 0)
        self.conversation.refresh_from_db()
        self.assertEqual(self.conversation.watermark, 0)
        return error

    def test_malformed_json(self):
        for data in ("{", '{"type": "message",}', "nul", '"unterminated', b"\xff\xfe{}"):
            with self.subTest(data=data):
                self.assertRefused(self.post_raw(data), 400, "BadSyntax")

    def test_json_a_database_cannot_store(self):
        cases = {
            "NaN": '{"type": "message", "value": NaN}',
            "Infinity": '{"type": "message", "value": -Infinity}',
            "NUL": '{"type": "message", "text": "a\\u0000b"}',
            "NUL key": '{"type": "message", "a\\u0000": 1}',
            "lone surrogate": '{"type": "message", "text": "\\ud800"}',
        }
        for name, data in cases.items():
            with self.subTest(name):
                response = self.post_raw(data)
                self.assertEqual(response.status_code, 400)
                self.assertRefused(response, 400)

    def test_deeply_nested_json(self):
        data = '{"type": "message", "channelData": ' + "[" * 100_000 + "]" * 100_000 + "}"
        self.assertRefused(self.post_raw(data), 400, "BadSyntax")

    def test_not_an_activity(self):
        cases = [
            ("[]", "BadArgument"),
            ('"message"', "BadArgument"),
            ("{}", "MissingProperty"),
            ('{"type": 3}', "BadArgument"),
            ('{"type": ""}', "BadArgument"),
            ('{"type": "message", "from": "me"}', "BadArgument"),
            ('{"type": "message", "from": {"id": 5}}', "BadArgument"),
            ('{"type": "message", "from": {"name": ["x"]}}', "BadArgument"),
            ('{"type": "message", "text": 5}', "BadArgument"),
            ('{"type": "message", "attachments": {}}', "BadArgument"),
            ('{"type": "message", "attachments": ["x"]}', "BadArgument"),
            ("", "MissingProperty"),
            ("   ", "MissingProperty"),
        ]
        for data, code in cases:
            with self.subTest(data=data):
                self.assertRefused(self.post_raw(data), 400, code)

    def test_wrong_content_type_is_415(self):
        body = json.dumps({"type": "message"})
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
            with self.subTest(content_type=content_type):
                self.assertRefused(self.post_raw(body, content_type), 415, "UnsupportedMediaType")
        self.assertRefused(
            self.post_raw(body, "application/json; charset=latin-1"), 415, "UnsupportedMediaType"
        )
        response = self.client.generic("POST", self.path, body, **bearer(self.token))
        self.assertRefused(response, 415, "UnsupportedMediaType")

    def test_multipart_to_activities_is_415(self):
        response = self.client.post(self.path, {"type": "message"}, **bearer(self.token))
        self.assertRefused(response, 415)

    def test_activity_over_256_kib_is_413(self):
        text = "x" * (256 * 1024)
        self.assertRefused(
            self.post_raw(json.dumps({"type": "message", "text": text})), 413, "MessageSizeTooBig"
        )
        # Just under the limit is fine.
        just_under = json.dumps({"type": "message", "text": ""})
        padding = 256 * 1024 - len(just_under)
        response = self.post_raw(json.dumps({"type": "message", "text": "y" * padding}))
        self.assertEqual(response.status_code, 200)

    @override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
    def test_body_over_django_limit_is_413_not_400(self):
        response = self.post_raw(json.dumps({"type": "message", "text": "z" * 200}))
        self.assertRefused(response, 413, "MessageSizeTooBig")

    @override_settings(WEBCHAT_DIRECTLINE={"MAX_ACTIVITY_BYTES": 50})
    def test_limit_is_a_setting(self):
        response = self.post_raw(json.dumps({"type": "message", "text": "z" * 50}))
        self.assertRefused(response, 413, "MessageSizeTooBig")

    def test_unknown_conversation_is_404(self):
        response = self.client.post(
            BASE + "/conversations/nope/activities",
            data=json.dumps({"type": "message", "from": {"id": "u"}}),
            content_type="application/json",
            **bearer(self.secret),
        )
        self.assertRefused(response, 404, "NotFound")

    def test_tokens_and_secrets_of_others(self):
        other = Conversation.objects.create(tenant=self.tenant)
        foreign = Conversation.objects.create(tenant=self.other_tenant)
        body = json.dumps({"type": "message", "from": {"id": "u"}})
        cases = [
            (other, self.token, 403, "Forbidden"),
            (foreign, self.token, 403, "Forbidden"),
            (foreign, self.secret, 404, "NotFound"),
            (self.conversation, self.other_secret, 404, "NotFound"),
            (
                self.conversation,
                expired_token(self.tenant.pk, self.conversation.id),
                403,
                "TokenExpired",
            ),
            # A token naming tenant B for A's conversation id.
            (
                self.conversation,
                issue_token(self.other_tenant.pk, self.conversation.id, "u"),
                403,
                "Forbidden",
            ),
        ]
        for conversation, credential, status, code in cases:
            with self.subTest(conversation=conversation.id, status=status, code=code):
                response = self.client.post(
                    f"{BASE}/conversations/{conversation.id}/activities",
                    data=body,
                    content_type="application/json",
                    **bearer(credential),
                )
                self.assertRefused(response, status, code)
        self.assertEqual(Activity.objects.count(), 0)

    def test_refusals_are_logged_without_credentials(self):
        with self.assertLogs("webchat.views", "INFO") as logs:
            self.post_raw("{", credential=self.token)
            self.post_raw("{", credential=self.secret)
            self.client.post(
                self.path, data="{}", content_type="application/json", **bearer(self.secret + "x")
            )
        output = "\n".join(logs.output)
        self.assertIn("BadSyntax", output)
        self.assertIn("Unknown or revoked secret", output)
        for credential in (self.token, self.secret, self.secret + "x"):
            self.assertNotIn(credential, output)


class PollingTests(DirectLineMixin, TestCase):
    def setUp(self):
        super().setUp()
        self.stored = [
            append_activity(self.conversation, {"type": "message", "text": str(n)})
            for n in range(1, 6)
        ]
        self.path = f"/conversations/{self.conversation.id}/activities"

    def test_poll_from_the_start_and_from_a_watermark(self):
        for suffix, expected in [
            ("", 5),
            ("?watermark=", 5),
            ("?watermark=0", 5),
            ("?watermark=3", 2),
            ("?watermark=5", 0),
        ]:
            with self.subTest(suffix=suffix):
                response = self.get(self.path + suffix, self.token)
                self.assertEqual(response.status_code, 200)
                body = response.json()
                self.assertEqual(set(body), {"activities", "watermark"})
                self.assertEqual(body["activities"], self.stored[5 - expected :])
                self.assertEqual(body["watermark"], "5")

    def test_poll_of_an_empty_conversation(self):
        empty = Conversation.objects.create(tenant=self.tenant)
        response = self.get(f"/conversations/{empty.id}/activities", self.secret)
        self.assertEqual(response.json(), {"activities": [], "watermark": "0"})

    @override_settings(WEBCHAT_DIRECTLINE={"MAX_POLL_ACTIVITIES": 2})
    def test_poll_pages_through_a_long_transcript(self):
        seen, watermark = [], ""
        for _ in range(4):
            body = self.get(f"{self.path}?watermark={watermark}", self.token).json()
            seen.extend(a["text"] for a in body["activities"])
            watermark = body["watermark"]
        self.assertEqual(seen, ["1", "2", "3", "4", "5"])
        self.assertEqual(watermark, "5")

    def test_bad_watermarks_are_400(self):
        for watermark in ("abc", "-1", "1e3", "6", "9223372036854775808", "1" * 30, "٣"):
            with self.subTest(watermark=watermark):
                response = self.client.get(
                    BASE + self.path, {"watermark": watermark}, **bearer(self.token)
                )
                self.assertDirectLineError(response, 400, "BadArgument")

    def test_poll_scoping(self):
        foreign = Conversation.objects.create(tenant=self.other_tenant)
        self.assertDirectLineError(
            self.get(f"/conversations/{foreign.id}/activities", self.token), 403, "Forbidden"
        )
        self.assertDirectLineError(
            self.get(f"/conversations/{foreign.id}/activities", self.secret), 404, "NotFound"
        )
        self.assertDirectLineError(self.get(self.path, self.other_secret), 404, "NotFound")


class AsgiRequestTests(DirectLineMixin, TestCase):
    """The same views through the ASGI handler, as daphne runs them."""

    async def test_post_and_poll_through_asgi(self):
        path = f"{BASE}/conversations/{self.conversation.id}/activities"
        headers = {"Authorization": f"Bearer {self.token}"}
        response = await self.async_client.post(
            path,
            json.dumps({"type": "message", "text": "via asgi"}),
            content_type="application/json",
            headers=headers,
        )
        self.assertEqual(response.status_code, 200)
        posted = response.json()["id"]
        response = await self.async_client.get(path, {"watermark": "0"}, headers=headers)
        body = response.json()
        self.assertEqual([a["id"] for a in body["activities"]], [posted])
        self.assertEqual(body["watermark"], "1")

    async def test_bad_input_through_asgi(self):
        path = f"{BASE}/conversations/{self.conversation.id}/activities"
        headers = {"Authorization": f"Bearer {self.token}"}
        cases = [
            ("{", "application/json", 400),
            ('{"type": "message"}', "text/plain", 415),
            (json.dumps({"type": "message", "text": "x" * 300_000}), "application/json", 413),
        ]
        for data, content_type, status in cases:
            with self.subTest(status=status):
                response = await self.async_client.post(
                    path, data, content_type=content_type, headers=headers
                )
                self.assertEqual(response.status_code, status)
                self.assertIn("error", response.json())
        response = await self.async_client.get(path, {"watermark": "-1"}, headers=headers)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(await Activity.objects.acount(), 0)
