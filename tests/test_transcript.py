from django.test import TestCase

from notifier.signals import watermark_bumped
from webchat.models import Conversation, Tenant
from webchat.pages import read_page
from webchat.transcript import append_activity


class AppendActivityTests(TestCase):
    def setUp(self):
        self.tenant = Tenant.objects.create(name="acme")
        self.conversation = Conversation.objects.create(tenant=self.tenant)

    def test_sequences_ids_and_watermark(self):
        first = append_activity(self.conversation, {"type": "message", "text": "a"})
        second = append_activity(self.conversation, {"type": "message", "text": "b"})
        self.assertEqual(first["id"], f"{self.conversation.id}|0000001")
        self.assertEqual(second["id"], f"{self.conversation.id}|0000002")
        self.assertRegex(first["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.conversation.refresh_from_db()
        self.assertEqual(self.conversation.watermark, 2)
        page = read_page(self.conversation.id, 1, limit=10, max_bytes=2**20)
        self.assertEqual([a["text"] for a in page.activities], ["b"])
        self.assertEqual(page.newest, 2)

    def test_signal_sent_inside_transaction(self):
        seen = []

        def receiver(**kwargs):
            seen.append((kwargs["tenant_id"], kwargs["conversation_id"], kwargs["new_watermark"]))

        watermark_bumped.connect(receiver)
        try:
            append_activity(self.conversation, {"type": "message"})
        finally:
            watermark_bumped.disconnect(receiver)
        self.assertEqual(seen, [(str(self.tenant.pk), self.conversation.id, 1)])
