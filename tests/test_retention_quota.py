"""The per-tenant upload quota and retention, with real files in a temporary MEDIA_ROOT."""

import os
import tempfile
from datetime import timedelta
from io import StringIO

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings
from django.utils import timezone

from webchat import quota
from webchat.conf import DEFAULTS
from webchat.models import Activity, Conversation, Tenant
from webchat.retention import attachment_names
from webchat.tokens import issue_token

from .directline_support import BASE, DirectLineMixin


def limits(**values):
    return override_settings(WEBCHAT_LIMITS={**DEFAULTS["WEBCHAT_LIMITS"], "ENABLED": False,
                                             **values})  # fmt: skip


class MediaMixin(DirectLineMixin):
    def setUp(self):
        super().setUp()
        media = tempfile.TemporaryDirectory()
        self.addCleanup(media.cleanup)
        self.media_root = media.name
        self.enterContext(override_settings(MEDIA_ROOT=self.media_root))

    def upload(self, conversation, token, size, name="f.bin"):
        return self.client.post(
            f"{BASE}/conversations/{conversation.id}/upload?userId=user-1",
            {"file": SimpleUploadedFile(name, b"x" * size, "application/octet-stream")},
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

    def stored(self) -> dict:
        """{path relative to MEDIA_ROOT: size} of every file stored."""
        found = {}
        for root, _, names in os.walk(self.media_root):
            for name in names:
                path = os.path.join(root, name)
                found[os.path.relpath(path, self.media_root)] = os.path.getsize(path)
        return found

    def directories(self) -> list:
        return [os.path.relpath(root, self.media_root) for root, _, _ in os.walk(self.media_root)]


class UploadQuotaTests(MediaMixin, TestCase):
    @limits(UPLOAD_QUOTA_BYTES=1000)
    def test_a_token_cannot_store_more_than_the_tenant_s_quota(self):
        statuses = [self.upload(self.conversation, self.token, 300).status_code for _ in range(5)]
        self.assertEqual(statuses, [200, 200, 200, 413, 413])
        refused = self.upload(self.conversation, self.token, 300)
        self.assertDirectLineError(refused, 413, "QuotaExceeded")
        self.assertIn("quota (1000 bytes)", refused.json()["error"]["message"])
        # Nothing of the refused uploads was written: no file, no activity.
        self.assertEqual(sum(self.stored().values()), 900)
        self.assertEqual(Activity.objects.filter(conversation=self.conversation).count(), 3)
        self.assertEqual(quota.used(self.tenant.pk), 900)
        # What still fits is taken; another tenant has its own quota.
        self.assertEqual(self.upload(self.conversation, self.token, 100).status_code, 200)
        other = Conversation.objects.create(tenant=self.other_tenant)
        other_token = issue_token(self.other_tenant.pk, other.id, "user-1")
        self.assertEqual(self.upload(other, other_token, 900).status_code, 200)

    @limits(UPLOAD_QUOTA_BYTES=None)
    def test_no_quota_still_counts(self):
        self.assertEqual(self.upload(self.conversation, self.token, 5000).status_code, 200)
        self.assertEqual(quota.used(self.tenant.pk), 5000)

    def test_release_never_goes_below_zero(self):
        quota.release(self.tenant.pk, 10)
        self.assertEqual(quota.used(self.tenant.pk), 0)


class RetentionTests(MediaMixin, TestCase):
    def age(self, days, conversation=None, activities=None):
        """Make a conversation (and/or activities) ``days`` old."""
        when = timezone.now() - timedelta(days=days)
        if conversation is not None:
            Conversation.objects.filter(pk=conversation.pk).update(created=when)
        if activities is not None:
            Activity.objects.filter(pk__in=[a.pk for a in activities]).update(created=when)

    def test_deletes_what_is_older_than_the_setting(self):
        # An abandoned conversation: everything 40 days old, two files.
        old = self.conversation
        self.assertEqual(self.upload(old, self.token, 100, "a.txt").status_code, 200)
        self.assertEqual(self.upload(old, self.token, 200, "b.txt").status_code, 200)
        self.age(40, old, Activity.objects.filter(conversation=old))
        # A conversation still in use: an old message with a file, a new one with a file.
        live = Conversation.objects.create(tenant=self.tenant)
        live_token = issue_token(self.tenant.pk, live.id, "user-1")
        self.assertEqual(self.upload(live, live_token, 50, "old.txt").status_code, 200)
        old_message = Activity.objects.get(conversation=live)
        self.age(40, live, [old_message])
        self.assertEqual(self.upload(live, live_token, 70, "new.txt").status_code, 200)
        # An old activity pointing at the new file of its own conversation through another
        # conversation's URL: retention must not follow it.
        new_file = Activity.objects.get(conversation=live, sequence=2).data["attachments"][0]
        foreign = Conversation.objects.create(tenant=self.tenant)
        forged = {
            "type": "message",
            "from": {"id": "u"},
            "attachments": [
                {"contentUrl": new_file["contentUrl"].replace(live.id, foreign.id)},
                {"contentUrl": new_file["contentUrl"]},
            ],
        }
        Activity.objects.create(conversation=foreign, sequence=1, data=forged)
        self.age(40, foreign, Activity.objects.filter(conversation=foreign))
        self.assertEqual(quota.used(self.tenant.pk), 420)
        before = self.stored()
        self.assertEqual(len(before), 4)

        out = StringIO()
        with override_settings(WEBCHAT_RETENTION_DAYS=30):
            call_command("apply_retention", "--dry-run", stdout=out)
            self.assertIn("Would delete 2 conversations, 4 activities, 3 files (350 bytes)",
                          out.getvalue())  # fmt: skip
            self.assertEqual(self.stored(), before)
            call_command("apply_retention", stdout=out)
        self.assertIn("Deleted 2 conversations, 4 activities, 3 files (350 bytes)",
                      out.getvalue())  # fmt: skip

        self.assertFalse(Conversation.objects.filter(pk__in=[old.pk, foreign.pk]).exists())
        self.assertFalse(Activity.objects.filter(conversation_id=old.pk).exists())
        self.assertEqual(
            list(Activity.objects.filter(conversation=live).values_list("sequence", flat=True)),
            [2],
        )
        [kept] = self.stored()
        self.assertTrue(kept.endswith("new.txt"))
        self.assertIn(live.id, kept)
        # The abandoned conversation's directory is gone too, and its bytes are given back.
        self.assertFalse(any(old.id in d for d in self.directories()))
        self.assertEqual(quota.used(self.tenant.pk), 70)
        # The live conversation still works and pages from its watermark.
        response = self.get(f"/conversations/{live.id}/activities?watermark=0", live_token)
        self.assertEqual([a["id"] for a in response.json()["activities"]], [f"{live.id}|0000002"])

    def test_a_conversation_with_a_recent_activity_stays_whole(self):
        self.post_json(f"/conversations/{self.conversation.id}/activities",
                       {"type": "message", "text": "hi"}, self.token)  # fmt: skip
        self.age(40, self.conversation)
        call_command("apply_retention", "--days", "30", stdout=StringIO())
        self.assertTrue(Activity.objects.filter(conversation=self.conversation).exists())

    def test_without_a_setting_it_refuses(self):
        with self.assertRaisesMessage(CommandError, "WEBCHAT_RETENTION_DAYS"):
            call_command("apply_retention", stdout=StringIO())
        with self.assertRaises(CommandError):
            call_command("apply_retention", "--days", "0", stdout=StringIO())

    def test_attachment_names_follow_only_the_conversation_s_own_files(self):
        url = "https://h/v3/directline/conversations/c1/attachments/{}/{}"
        activity = {"attachments": [
            {"contentUrl": url.format("abc", "x%20y.txt")},
            {"contentUrl": url.format("abc", "..")},
            {"contentUrl": url.format("..", "x")},
            {"contentUrl": url.format("abc", "a%2Fb")},
            {"contentUrl": url.replace("c1", "c2").format("abc", "x")},
            {"contentUrl": 5},
            "nonsense",
        ]}  # fmt: skip
        self.assertEqual(attachment_names("c1", activity), ["directline/c1/abc/x y.txt"])
        self.assertEqual(attachment_names("c1", {"attachments": "no"}), [])


class TenantCounterTests(TestCase):
    def test_new_tenants_start_at_zero(self):
        self.assertEqual(Tenant.objects.create(name="t").upload_bytes, 0)
