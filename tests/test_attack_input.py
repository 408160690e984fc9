"""Input the database or the transcript's readers would be fooled by, attacked.

Non-finite numbers (``1e999`` overflows to infinity; NaN and Infinity are not JSON) were a
500 (SQLite's JSON check, PostgreSQL's DataError): now a 400 naming the number, on every
path that takes JSON. A user could display as ``from.name`` "Bot": the bot's names are
reserved (``WEBCHAT_DIRECTLINE["RESERVED_USER_NAMES"]``), compared as a reader sees them.
Runs on SQLite and, with ``DATABASE_URL`` set to PostgreSQL, on PostgreSQL.
"""

import os
import tempfile

from django.test import TestCase, override_settings

from webchat.models import Activity

from .directline_support import DirectLineMixin, bearer
from .test_directline_uploads import BOUNDARY, multipart


class NonFiniteNumberTests(DirectLineMixin, TestCase):
    BODIES = [
        b'{"type": "message", "value": 1e999}',
        b'{"type": "message", "value": -1e999}',
        b'{"type": "message", "channelData": {"deep": [1, 2.5, 1E+400]}}',
        b'{"type": "message", "value": NaN}',
        b'{"type": "message", "value": Infinity}',
        b'{"type": "message", "value": -Infinity}',
    ]

    def test_non_finite_numbers_are_a_400_naming_the_problem(self):
        for body in self.BODIES:
            with self.subTest(body=body):
                response = self.post_json(
                    f"/conversations/{self.conversation.id}/activities", body, self.token
                )
                self.assertDirectLineError(response, 400, "BadSyntax")
                message = response.json()["error"]["message"]
                self.assertTrue("finite" in message or "not valid JSON" in message, message)
        self.assertEqual(Activity.objects.count(), 0)

    def test_the_bot_api_and_uploads_refuse_them_too(self):
        response = self.post_json(f"/bot/conversations/{self.conversation.id}/activities",
                                  self.BODIES[0], self.secret)
        self.assertDirectLineError(response, 400, "BadSyntax")
        body = multipart([
            ("activity", "blob", "application/vnd.microsoft.activity", self.BODIES[0]),
            ("file", "a.txt", "text/plain", b"hello"),
        ])  # fmt: skip
        with tempfile.TemporaryDirectory() as media, override_settings(MEDIA_ROOT=media):
            response = self.client.post(
                f"/v3/directline/conversations/{self.conversation.id}/upload?userId=u1",
                data=body, content_type=f"multipart/form-data; boundary={BOUNDARY}",
                **bearer(self.token),
            )
            self.assertDirectLineError(response, 400, "BadSyntax")
            self.assertEqual(os.listdir(media), [])
        self.assertEqual(Activity.objects.count(), 0)

    def test_large_finite_numbers_are_kept(self):
        body = b'{"type": "message", "value": 1.7976931348623157e308, "n": 123456789012345678}'
        response = self.post_json(
            f"/conversations/{self.conversation.id}/activities", body, self.token
        )
        self.assertEqual(response.status_code, 200, response.content)
        stored = Activity.objects.get()
        # PostgreSQL's jsonb gives it back as the integer of the same value.
        self.assertEqual(float(stored.data["value"]), 1.7976931348623157e308)
        self.assertEqual(stored.data["n"], 123456789012345678)


class ReservedNameTests(DirectLineMixin, TestCase):
    def post(self, sender, credential=None):
        return self.post_json(f"/conversations/{self.conversation.id}/activities",
                              {"type": "message", "text": "hi", "from": sender},
                              credential or self.token)

    def test_a_user_cannot_display_as_the_bot(self):
        for name in ("Bot", "bot", " BOT ", "Ｂｏｔ", "B\u200bot", "b o t"):
            with self.subTest(name=name):
                response = self.post({"id": "x", "name": name})
                self.assertDirectLineError(response, 400, "BadArgument")
                self.assertIn("reserved for the bot", response.json()["error"]["message"])
        response = self.post({"id": "u9", "name": "Bot"}, self.secret)
        self.assertDirectLineError(response, 400, "BadArgument")
        self.assertEqual(Activity.objects.count(), 0)

    def test_nor_through_a_token(self):
        for path in ("/tokens/generate", "/conversations"):
            with self.subTest(path=path):
                response = self.post_json(path, {"user": {"id": "u1", "name": "bot"}},
                                          self.secret)
                self.assertDirectLineError(response, 400, "BadArgument")

    def test_other_names_and_the_bot_itself_are_fine(self):
        self.assertEqual(self.post({"id": "x", "name": "Bo"}).status_code, 200)
        self.assertEqual(self.post({"id": "x", "name": "Botany"}).status_code, 200)
        response = self.post_json(f"/bot/conversations/{self.conversation.id}/activities",
                                  {"type": "message", "text": "hi"}, self.secret)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(Activity.objects.last().data["from"]["name"], "Bot")

    @override_settings(WEBCHAT_DIRECTLINE={"RESERVED_USER_NAMES": ["Bot", "Support"]})
    def test_the_list_is_a_setting(self):
        self.assertDirectLineError(self.post({"id": "x", "name": "support"}), 400)
