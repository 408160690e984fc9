"""``manage.py create_tenant``: the secret printed once, as the last line, and working."""

from io import StringIO

from django.core.management import CommandError, call_command
from django.test import TestCase

from webchat.models import Tenant, TenantSecret

from .directline_support import BASE, bearer


class CreateTenantTests(TestCase):
    def run_command(self, *args):
        out = StringIO()
        call_command("create_tenant", *args, stdout=out)
        return out.getvalue().splitlines()

    def test_prints_the_secret_as_the_last_line(self):
        lines = self.run_command("acme")
        secret = lines[-1]
        tenant = Tenant.objects.get(name="acme")
        self.assertIn("acme", lines[0])
        self.assertEqual(TenantSecret.tenant_for(secret), tenant)
        # The secret is shown once and stored only as its hash.
        self.assertEqual(sum(secret in line for line in lines), 1)
        self.assertNotIn(secret, tenant.secrets.get().secret_hash)
        response = self.client.generic("POST", BASE + "/conversations", **bearer(secret))
        self.assertEqual(response.status_code, 201)

    def test_existing_name_is_an_error(self):
        self.run_command("acme")
        with self.assertRaisesMessage(CommandError, "--new-secret"):
            self.run_command("acme")
        self.assertEqual(Tenant.objects.filter(name="acme").count(), 1)

    def test_new_secret_for_an_existing_tenant(self):
        first = self.run_command("acme")[-1]
        second = self.run_command("acme", "--new-secret")[-1]
        self.assertNotEqual(first, second)
        tenant = Tenant.objects.get(name="acme")
        self.assertEqual(TenantSecret.tenant_for(first), tenant)
        self.assertEqual(TenantSecret.tenant_for(second), tenant)

    def test_new_secret_for_a_missing_tenant_is_an_error(self):
        with self.assertRaisesMessage(CommandError, "No tenant"):
            self.run_command("ghost", "--new-secret")
        self.assertFalse(Tenant.objects.exists())

    def test_bad_names(self):
        for name in ("", "   ", "x" * 201):
            with self.subTest(name=name[:10]), self.assertRaises(CommandError):
                self.run_command(name)
        self.assertFalse(Tenant.objects.exists())
