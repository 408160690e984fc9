"""webchat.queries: the hot paths' SQL gives what the ORM gives."""

from unittest import mock

from django.db import connection
from django.test import TestCase

from webchat import queries
from webchat.models import Activity, Conversation, Tenant, TenantSecret, hash_secret
from webchat.pages import encode, read_page
from webchat.transcript import append_activity


class QueriesTests(TestCase):
    def setUp(self):
        self.tenant = Tenant.objects.create(name="t")
        self.secret = self.tenant.add_secret()
        self.conversation = Conversation.objects.create(tenant=self.tenant)

    def test_statements_name_the_models_tables_and_columns(self):
        sql = queries._render(queries.LOCK_CONVERSATION, connection)
        self.assertEqual(
            sql,
            'SELECT "id", "tenant_id", "watermark" FROM "webchat_conversation"'
            ' WHERE "id" = %s',  # SQLite: no FOR UPDATE, the transaction holds the lock
        )

    def test_secrets(self):
        self.assertEqual(queries.tenant_id_for_secret(hash_secret(self.secret)), self.tenant.pk)
        self.assertIsNone(queries.tenant_id_for_secret(hash_secret("not-a-secret")))
        TenantSecret.objects.update(revoked=True)
        self.assertIsNone(queries.tenant_id_for_secret(hash_secret(self.secret)))

    def test_conversation_loads_three_fields_and_defers_the_rest(self):
        found = queries.conversation(self.conversation.id)
        self.assertEqual(
            (found.pk, found.tenant_id, found.watermark), (self.conversation.id, self.tenant.pk, 0)
        )
        self.assertEqual(found.get_deferred_fields(), {"created"})
        self.assertEqual(found.created, self.conversation.created)  # loaded on access
        self.assertIsNone(queries.conversation("no-such-id"))

    def test_appended_rows_read_back_as_the_orm_reads_them(self):
        body = {"type": "message", "text": "ünïcode \u2028 and \"quotes\"", "n": [1, 2.5, None]}
        stored = [append_activity(self.conversation, dict(body)) for _ in range(3)]
        rows = list(Activity.objects.filter(conversation=self.conversation)
                    .order_by("sequence").values_list("sequence", "data"))  # fmt: skip
        self.assertEqual(rows, [(i + 1, stored[i]) for i in range(3)])
        self.assertEqual(Conversation.objects.get(pk=self.conversation.pk).watermark, 3)
        self.assertEqual(
            list(Activity.objects.order_by("sequence").values_list("size", flat=True)),
            [len(encode(activity)) for activity in stored],
        )

        def page(watermark, limit=1000, max_bytes=2**20):
            found = read_page(self.conversation.id, watermark, limit=limit, max_bytes=max_bytes)
            return found.activities, found.newest

        self.assertEqual(page(1), (stored[1:], 3))
        self.assertEqual(page(0, limit=2), (stored[:2], 2))
        self.assertEqual(page(3), ([], 3))
        one = len(encode(stored[0]))
        self.assertEqual(page(0, max_bytes=one + 100), (stored[:1], 1))
        self.assertEqual(page(0, max_bytes=1), (stored[:1], 1))  # always one: paging moves on
        self.assertEqual(Activity.objects.filter(created__isnull=False).count(), 3)

    def test_appends_without_update_returning(self):
        # Databases that cannot return updated columns (SQLite before 3.35) lock, then update.
        with mock.patch.object(connection.features, "can_return_columns_from_insert", False):
            ids = [append_activity(self.conversation, {"type": "message"})["id"] for _ in range(3)]
            self.assertIsNone(queries.bump_watermark("no-such-id"))
        self.assertEqual([i.rsplit("|", 1)[1] for i in ids], ["0000001", "0000002", "0000003"])
        self.assertEqual(Conversation.objects.get(pk=self.conversation.pk).watermark, 3)

    def test_append_to_a_deleted_conversation_raises_does_not_exist(self):
        gone = Conversation(pk="gone")
        with self.assertRaises(Conversation.DoesNotExist):
            append_activity(gone, {"type": "message"})
