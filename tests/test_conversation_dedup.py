"""POST /conversations dedup (issue 15): the same user.id within the window, one conversation.

In process for the rules, then across two real daphne replicas sharing the database (SQLite
and PostgreSQL), with the starts racing each other.
"""

import secrets
import threading
from datetime import timedelta
from unittest import SkipTest

from django.test import SimpleTestCase, TestCase, override_settings
from django.utils import timezone

from tests.support.replicas import postgres_unavailable, redis_unavailable, start_cluster
from webchat.checks import check_settings
from webchat.conf import settings
from webchat.models import Conversation, ConversationStart
from webchat.tokens import read_token

from .directline_support import DirectLineMixin


class DedupTests(DirectLineMixin, TestCase):
    def start(self, body, credential=None):
        response = self.post_json("/conversations", body, credential or self.secret)
        self.assertEqual(response.status_code, 201, response.content)
        return response.json()

    def test_same_user_within_the_window_gets_the_same_conversation(self):
        first = self.start({"user": {"id": "guest-1", "name": "Ann"}})
        count = Conversation.objects.count()
        second = self.start({"user": {"id": "guest-1"}})
        self.assertEqual(second["conversationId"], first["conversationId"])
        self.assertEqual(Conversation.objects.count(), count)
        # Each answer has its own token, for the same user and conversation.
        claims = read_token(second["token"])
        self.assertEqual((claims.conversation_id, claims.user_id),
                         (first["conversationId"], "guest-1"))
        self.assertIn(first["conversationId"], second["streamUrl"])

    def test_other_users_tenants_and_anonymous_starts_get_their_own(self):
        first = self.start({"user": {"id": "guest-1"}})
        others = [
            self.start({"user": {"id": "guest-2"}}),
            self.start({"user": {"id": "guest-1"}}, self.other_secret),
            self.start({}),
            self.start({"user": {}}),
        ]
        ids = [first["conversationId"]] + [body["conversationId"] for body in others]
        self.assertEqual(len(set(ids)), len(ids))

    def test_after_the_window_a_new_conversation_and_old_claims_are_dropped(self):
        first = self.start({"user": {"id": "guest-1"}})
        self.start({"user": {"id": "guest-2"}})
        ConversationStart.objects.update(created=timezone.now() - timedelta(seconds=31))
        second = self.start({"user": {"id": "guest-1"}})
        self.assertNotEqual(second["conversationId"], first["conversationId"])
        # The table holds only the window's starts: guest-2's stale claim went too.
        self.assertEqual(
            list(ConversationStart.objects.values_list("conversation_id", flat=True)),
            [second["conversationId"]],
        )

    def test_window_setting_and_zero_turns_it_off(self):
        with override_settings(WEBCHAT_SEED={"CONVERSATION_DEDUP_SECONDS": 0}):
            first = self.start({"user": {"id": "guest-1"}})
            second = self.start({"user": {"id": "guest-1"}})
        self.assertNotEqual(second["conversationId"], first["conversationId"])
        with override_settings(WEBCHAT_SEED={"CONVERSATION_DEDUP_SECONDS": 120}):
            first = self.start({"user": {"id": "guest-3"}})
            ConversationStart.objects.update(created=timezone.now() - timedelta(seconds=60))
            second = self.start({"user": {"id": "guest-3"}})
        self.assertEqual(second["conversationId"], first["conversationId"])

    def test_a_token_start_is_its_own_conversation_whatever_the_body(self):
        before = self.start({"user": {"id": "user-1"}})
        body = self.start({"user": {"id": "user-1"}}, self.token)
        self.assertEqual(body["conversationId"], self.conversation.id)
        self.assertNotEqual(before["conversationId"], self.conversation.id)

    def test_long_and_odd_user_ids_fit(self):
        user_id = "ü" * 256
        first = self.start({"user": {"id": user_id}})
        self.assertEqual(self.start({"user": {"id": user_id}})["conversationId"],
                         first["conversationId"])


class SettingsCheckTests(SimpleTestCase):
    def test_bad_values_are_reported_by_the_check(self):
        for value in ({"CONVERSATION_DEDUP_SECONDS": -1}, {"CONVERSATION_DEDUP_SECONDS": "30"},
                      {"CONVERSATION_DEDUP_SECONDS": 3601}, {"PUBLIC_TOKEN_TENANTS": "acme"},
                      {"PUBLIC_TOKEN_TENANTS": [""]}, {"NOPE": 1}, ["x"]):
            with self.subTest(value=value), override_settings(WEBCHAT_SEED=value):
                self.assertEqual({e.id for e in check_settings()}, {"webchat.E150"})
        with override_settings(WEBCHAT_SEED={"PUBLIC_TOKEN_TENANTS": ["a"],
                                             "CONVERSATION_DEDUP_SECONDS": 0}):
            self.assertEqual(check_settings(), [])
            self.assertEqual(settings.public_token_tenants, frozenset({"a"}))
            self.assertEqual(settings.conversation_dedup_seconds, 0)


class TwoReplicaDedupMixin:
    """Starts racing on two daphne replicas with the same user.id get one conversation."""

    database = "sqlite"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = redis_unavailable()
        if reason is None and cls.database == "postgres":
            reason = postgres_unavailable()
        if reason:
            raise SkipTest(reason)
        cls.cluster = start_cluster(cls, replicas=2, database=cls.database)
        cls.secret = cls.cluster.create_tenant()

    def race(self, replica, user_id, results, barrier):
        barrier.wait()
        self.start(replica, user_id, results)

    def start(self, replica, user_id, results):
        status, body = self.cluster.http(
            replica, "POST", "/v3/directline/conversations", {"user": {"id": user_id}},
            secret=self.secret,
        )  # fmt: skip
        results.append((status, body))

    def test_racing_starts_on_both_replicas(self):
        for _round in range(3):
            user_id = f"guest-{secrets.token_hex(4)}"
            results, barrier = [], threading.Barrier(8)
            threads = [
                threading.Thread(target=self.race, args=(n % 2, user_id, results, barrier))
                for n in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            self.assertEqual([status for status, _ in results], [201] * 8, results)
            ids = {body["conversationId"] for _, body in results}
            self.assertEqual(len(ids), 1, results)
            # A later start on either replica, still within the window: the same one.
            for replica in (0, 1):
                later = []
                self.start(replica, user_id, later)
                self.assertEqual({later[0][1]["conversationId"]}, ids)


class TwoReplicaDedupSQLiteTests(TwoReplicaDedupMixin, SimpleTestCase):
    database = "sqlite"


class TwoReplicaDedupPostgresTests(TwoReplicaDedupMixin, SimpleTestCase):
    database = "postgres"
