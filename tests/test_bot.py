"""The in-process bot: the echo bot, the runner that writes its replies, the setting."""

import json
import threading

from django.core.checks import run_checks
from django.test import SimpleTestCase, TransactionTestCase, override_settings

from webchat.bot import BotRunner, bot_reply, bot_runner, echo_bot
from webchat.models import Activity, Conversation, Tenant
from webchat.tokens import issue_token

from .directline_support import BASE, bearer

WAIT = 10  # generous: the machine is shared

release = threading.Event()
started = threading.Event()


def blocking_bot(activity):
    """A bot that answers only once the test sets ``release``."""
    started.set()
    if not release.wait(WAIT):
        raise TimeoutError("the test never released the bot")
    return {"type": "message", "text": "late " + (activity.get("text") or "")}


def failing_bot(activity):
    if activity.get("text") == "boom":
        raise RuntimeError("the bot broke")
    return echo_bot(activity)


async def async_bot(activity):
    return [
        {"type": "typing"},
        {"type": "message", "text": "async " + activity.get("text", ""), "from": {"id": "b2"}},
    ]


not_a_callable = 42


class EchoBotTests(SimpleTestCase):
    def test_echoes_messages(self):
        self.assertEqual(
            echo_bot({"type": "message", "text": "hi"}), {"type": "message", "text": "You said: hi"}
        )

    def test_ignores_other_activities(self):
        self.assertIsNone(echo_bot({"type": "typing"}))
        self.assertIsNone(echo_bot({"type": "event", "name": "webchat/join"}))

    def test_describes_attachments_without_text(self):
        reply = echo_bot({"type": "message", "attachments": [{"name": "a.png"}, {}]})
        self.assertEqual(reply["text"], "You sent: a.png, a file")

    def test_bot_reply_fills_what_clients_rely_on(self):
        user = {"id": "c|0000001", "type": "message", "from": {"id": "u1", "role": "user"}}
        reply = bot_reply(user, {"text": "x", "from": {"id": "b", "role": "user"}})
        self.assertEqual(reply["type"], "message")
        self.assertEqual(reply["from"], {"id": "b", "role": "bot"})
        self.assertEqual(reply["replyToId"], "c|0000001")
        self.assertEqual(reply["recipient"], {"id": "u1", "role": "user"})
        with self.assertRaises(TypeError):
            bot_reply(user, "not a dict")


class BotSettingCheckTests(SimpleTestCase):
    def errors(self):
        return [e for e in run_checks() if e.id in {"webchat.E001", "webchat.E002"}]

    def test_default_setting_passes(self):
        self.assertEqual(self.errors(), [])

    @override_settings(WEBCHAT_BOT="webchat.bot.no_such_bot")
    def test_unimportable_bot(self):
        [error] = self.errors()
        self.assertEqual(error.id, "webchat.E001")
        self.assertIn("no_such_bot", error.msg)

    @override_settings(WEBCHAT_BOT="tests.test_bot.not_a_callable")
    def test_not_callable_bot(self):
        [error] = self.errors()
        self.assertEqual(error.id, "webchat.E001")

    @override_settings(WEBCHAT_BOT=None)
    def test_bot_off_passes(self):
        self.assertEqual(self.errors(), [])

    @override_settings(WEBCHAT_DIRECTLINE={"MAX_FILE_BYTES": 0, "MAX_FILES": 3})
    def test_bad_limits(self):
        errors = self.errors()
        self.assertEqual({e.id for e in errors}, {"webchat.E002"})
        self.assertEqual(len(errors), 2)
        self.assertTrue(any("MAX_FILES" in e.msg for e in errors))


class BotRunnerTests(TransactionTestCase):
    """Real commits: the runner writes on its own thread and database connection."""

    def setUp(self):
        self.tenant = Tenant.objects.create(name="bots")
        self.secret = self.tenant.add_secret()
        self.conversation = Conversation.objects.create(tenant=self.tenant)
        self.token = issue_token(self.tenant.pk, self.conversation.id, "user-1")
        self.path = f"{BASE}/conversations/{self.conversation.id}/activities"
        release.clear()
        started.clear()
        # Never leave a blocked bot behind for the next test.
        self.addCleanup(lambda: bot_runner.wait_idle(WAIT))
        self.addCleanup(release.set)

    def post(self, text, credential=None, path=None):
        response = self.client.post(
            path or self.path,
            json.dumps(
                {"type": "message", "text": text, "channelData": {"clientActivityID": text}}
            ),
            content_type="application/json",
            **bearer(credential or self.token),
        )
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()["id"]

    def transcript(self):
        return [
            a.data
            for a in Activity.objects.filter(conversation=self.conversation).order_by("sequence")
        ]

    def test_echo_reply_is_written_after_the_user_activity(self):
        user_id = self.post("hello")
        self.assertTrue(bot_runner.wait_idle(WAIT))
        user, reply = self.transcript()
        self.assertEqual(user["id"], user_id)
        self.assertEqual(user["from"]["role"], "user")
        self.assertEqual(reply["id"], f"{self.conversation.id}|0000002")
        self.assertEqual(reply["text"], "You said: hello")
        self.assertEqual(reply["replyToId"], user_id)
        self.assertEqual(reply["from"], {"id": "bot", "name": "Bot", "role": "bot"})
        self.assertEqual(reply["recipient"]["id"], "user-1")
        self.assertEqual(reply["channelId"], "directline")
        self.conversation.refresh_from_db()
        self.assertEqual(self.conversation.watermark, 2)

    @override_settings(WEBCHAT_BOT="tests.test_bot.blocking_bot")
    def test_the_request_does_not_wait_for_the_bot(self):
        user_id = self.post("slow")
        # The response came back while the bot is still running.
        self.assertTrue(started.wait(WAIT))
        self.assertEqual([a["id"] for a in self.transcript()], [user_id])
        release.set()
        self.assertTrue(bot_runner.wait_idle(WAIT))
        user, reply = self.transcript()
        self.assertEqual((reply["text"], reply["replyToId"]), ("late slow", user_id))

    @override_settings(WEBCHAT_BOT="tests.test_bot.blocking_bot")
    def test_replies_keep_the_order_of_the_messages(self):
        # All five wait behind the blocked first one, then the runner answers them in order.
        # (Posting while the bot writes would trip SQLite's shared-cache table lock, which
        # only the in-memory test database has.)
        ids = [self.post(f"m{n}") for n in range(5)]
        self.assertTrue(started.wait(WAIT))
        release.set()
        self.assertTrue(bot_runner.wait_idle(WAIT))
        transcript = self.transcript()
        self.assertEqual(len(transcript), 10)
        replies = [a for a in transcript if a["from"]["role"] == "bot"]
        self.assertEqual([r["replyToId"] for r in replies], ids)
        position = {a["id"]: n for n, a in enumerate(transcript)}
        for reply in replies:
            self.assertGreater(position[reply["id"]], position[reply["replyToId"]])

    @override_settings(WEBCHAT_BOT="tests.test_bot.async_bot")
    def test_async_bot_with_several_replies(self):
        user_id = self.post("hi")
        self.assertTrue(bot_runner.wait_idle(WAIT))
        _, typing, message = self.transcript()
        self.assertEqual(typing["type"], "typing")
        self.assertEqual(message["text"], "async hi")
        self.assertEqual(message["from"], {"id": "b2", "role": "bot"})
        self.assertEqual({typing["replyToId"], message["replyToId"]}, {user_id})

    @override_settings(WEBCHAT_BOT="tests.test_bot.failing_bot")
    def test_a_failing_bot_is_logged_and_the_next_message_answered(self):
        with self.assertLogs("webchat.bot", "ERROR") as logs:
            self.post("boom")
            self.assertTrue(bot_runner.wait_idle(WAIT))
        self.assertIn("the bot broke", "\n".join(logs.output))
        self.assertNotIn(self.token, "\n".join(logs.output))
        self.post("fine")
        self.assertTrue(bot_runner.wait_idle(WAIT))
        self.assertEqual(
            [a.get("text") for a in self.transcript()], ["boom", "fine", "You said: fine"]
        )

    @override_settings(WEBCHAT_BOT=None)
    def test_bot_off(self):
        self.post("anyone?")
        self.assertTrue(bot_runner.wait_idle(WAIT))
        self.assertEqual(len(self.transcript()), 1)

    def test_the_bot_does_not_answer_the_bot_api(self):
        self.post("from the bot", self.secret, f"{BASE}/bot/{self.path[len(BASE) + 1 :]}")
        self.assertTrue(bot_runner.wait_idle(WAIT))
        [activity] = self.transcript()
        self.assertEqual(activity["from"]["role"], "bot")

    @override_settings(
        WEBCHAT_BOT="tests.test_bot.blocking_bot", WEBCHAT_BOT_WORKERS=1, WEBCHAT_BOT_MAX_PENDING=1
    )
    def test_a_full_queue_drops_with_a_warning(self):
        runner = BotRunner()
        self.addCleanup(runner.close, WAIT)
        first = {"id": "c|1", "type": "message", "text": "1"}
        self.assertTrue(runner.submit(self.conversation.id, first))
        self.assertTrue(started.wait(WAIT))
        with self.assertLogs("webchat.bot", "WARNING") as logs:
            self.assertFalse(runner.submit(self.conversation.id, {"id": "c|2", "type": "message"}))
        self.assertIn("queue full", logs.output[0])
        release.set()
        self.assertTrue(runner.wait_idle(WAIT))
        [reply] = self.transcript()
        self.assertEqual(reply["replyToId"], "c|1")
