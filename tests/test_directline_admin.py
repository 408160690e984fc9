"""Tenants, secrets, conversations and activities in the Django admin."""

from django.contrib.auth import get_user_model
from django.test import TestCase

from webchat.models import Conversation, Tenant, TenantSecret
from webchat.transcript import append_activity


class AdminTests(TestCase):
    def setUp(self):
        user = get_user_model().objects.create_superuser("admin", "a@example.com", "pw")
        self.client.force_login(user)
        self.tenant = Tenant.objects.create(name="acme")
        self.secret = self.tenant.add_secret()
        self.conversation = Conversation.objects.create(tenant=self.tenant)
        self.activity = append_activity(
            self.conversation, {"type": "message", "from": {"id": "u", "role": "user"}}
        )

    def test_every_model_is_listed_and_shown_without_the_secret(self):
        for model in ("tenant", "tenantsecret", "conversation", "activity"):
            with self.subTest(model=model):
                response = self.client.get(f"/admin/webchat/{model}/")
                self.assertEqual(response.status_code, 200)
                self.assertNotContains(response, self.secret)
        response = self.client.get(f"/admin/webchat/tenant/{self.tenant.pk}/change/")
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, self.secret)
        response = self.client.get("/admin/webchat/activity/")
        self.assertContains(response, self.activity["id"])

    def test_transcripts_are_read_only(self):
        self.assertEqual(self.client.get("/admin/webchat/activity/add/").status_code, 403)
        self.assertEqual(self.client.get("/admin/webchat/conversation/add/").status_code, 403)
        self.assertEqual(self.client.get("/admin/webchat/tenantsecret/add/").status_code, 403)

    def test_create_secret_action_shows_a_working_secret_once(self):
        response = self.client.post(
            "/admin/webchat/tenant/",
            {"action": "create_secret", "_selected_action": [self.tenant.pk]},
            follow=True,
        )
        self.assertEqual(response.status_code, 200)
        [message] = [str(m) for m in response.context["messages"]]
        new_secret = message.rsplit(" ", 1)[-1]
        self.assertEqual(TenantSecret.tenant_for(new_secret), self.tenant)
        self.assertEqual(self.tenant.secrets.count(), 2)

    def test_revoking_a_secret_in_the_admin(self):
        row = self.tenant.secrets.get()
        response = self.client.post(
            f"/admin/webchat/tenantsecret/{row.pk}/change/", {"revoked": "on"}
        )
        self.assertEqual(response.status_code, 302)
        self.assertIsNone(TenantSecret.tenant_for(self.secret))
