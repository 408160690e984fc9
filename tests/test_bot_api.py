"""The bot API: a bot elsewhere posts and reads with its tenant's secret."""

import json

from django.test import TestCase

from webchat.models import Activity, Conversation
from webchat.transcript import append_activity

from .directline_support import BASE, DirectLineMixin, bearer, expired_token


class BotApiTests(DirectLineMixin, TestCase):
    def setUp(self):
        super().setUp()
        self.path = f"/bot/conversations/{self.conversation.id}/activities"
        self.user_activity = append_activity(
            self.conversation,
            {"type": "message", "text": "hi", "from": {"id": "user-1", "role": "user"}},
        )

    def test_post_as_the_bot(self):
        response = self.post_json(
            self.path,
            {
                "type": "message",
                "text": "Hello from afar",
                "replyToId": self.user_activity["id"],
                "channelData": {"k": [1, 2]},
            },
            self.secret,
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"id": f"{self.conversation.id}|0000002"})
        stored = Activity.objects.get(conversation=self.conversation, sequence=2).data
        self.assertEqual(stored["from"], {"id": "bot", "name": "Bot", "role": "bot"})
        self.assertEqual(stored["replyToId"], self.user_activity["id"])
        self.assertEqual(stored["channelData"], {"k": [1, 2]})
        self.assertEqual(stored["channelId"], "directline")
        self.assertRegex(stored["timestamp"], r"Z$")

    def test_the_bot_names_itself_but_is_always_a_bot(self):
        self.post_json(
            self.path, {"type": "message", "from": {"id": "helper", "role": "user"}}, self.secret
        )
        stored = Activity.objects.get(conversation=self.conversation, sequence=2).data
        self.assertEqual(stored["from"], {"id": "helper", "role": "bot"})

    def test_read_activities(self):
        append_activity(self.conversation, {"type": "message", "text": "second"})
        body = self.get(self.path + "?watermark=1", self.secret).json()
        self.assertEqual([a["text"] for a in body["activities"]], ["second"])
        self.assertEqual(body["watermark"], "2")
        body = self.get(self.path, self.secret).json()
        self.assertEqual(len(body["activities"]), 2)

    def test_user_tokens_are_refused(self):
        response = self.post_json(self.path, {"type": "message"}, self.token)
        self.assertDirectLineError(response, 403, "Forbidden")
        self.assertDirectLineError(self.get(self.path, self.token), 403, "Forbidden")
        expired = expired_token(self.tenant.pk, self.conversation.id)
        self.assertDirectLineError(self.get(self.path, expired), 403, "Forbidden")
        self.assertEqual(self.activity_count(), 1)

    def test_another_tenants_secret_sees_nothing(self):
        foreign = Conversation.objects.create(tenant=self.other_tenant)
        response = self.post_json(self.path, {"type": "message"}, self.other_secret)
        self.assertDirectLineError(response, 404, "NotFound")
        self.assertDirectLineError(self.get(self.path, self.other_secret), 404, "NotFound")
        response = self.post_json(
            f"/bot/conversations/{foreign.id}/activities", {"type": "message"}, self.secret
        )
        self.assertDirectLineError(response, 404, "NotFound")
        self.assertDirectLineError(
            self.post_json("/bot/conversations/nope/activities", {"type": "message"}, self.secret),
            404,
            "NotFound",
        )
        self.assertEqual(self.activity_count(), 1)

    def test_bad_input(self):
        cases = [
            ("{", "application/json", 400),
            ("{}", "application/json", 400),
            ('{"type": "message"}', "text/plain", 415),
            (json.dumps({"type": "message", "text": "x" * 300_000}), "application/json", 413),
        ]
        for data, content_type, status in cases:
            with self.subTest(data=data[:20], content_type=content_type):
                response = self.client.post(
                    BASE + self.path, data, content_type=content_type, **bearer(self.secret)
                )
                self.assertDirectLineError(response, status)
        for watermark in ("x", "-2", "3"):
            with self.subTest(watermark=watermark):
                self.assertDirectLineError(
                    self.get(f"{self.path}?watermark={watermark}", self.secret), 400, "BadArgument"
                )
        self.assertEqual(self.activity_count(), 1)
