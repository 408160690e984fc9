"""``manage.py create_tenant NAME``: a new tenant and its Direct Line secret.

The secret is stored hashed, so this is the only time it is shown: it is the last line of
the output, alone, so scripts can take it with ``tail -n 1``.

Rotation: ``--new-secret`` adds a secret and keeps the old ones; ``--new-secret --revoke-old``
adds one and revokes every other, which also revokes every token of the tenant (its token
epoch moves on). ``--revoke-tokens`` ends every session of the tenant and touches no secret.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from webchat.models import Tenant

MAX_NAME = Tenant._meta.get_field("name").max_length


class Command(BaseCommand):
    help = "Create a tenant and print its Direct Line secret (once, as the last line)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The tenant's unique name, e.g. 'acme'.")
        parser.add_argument(
            "--new-secret",
            action="store_true",
            help="The tenant exists already: add another secret to it (old ones stay valid "
            "unless --revoke-old).",
        )
        parser.add_argument(
            "--revoke-old",
            action="store_true",
            help="With --new-secret: revoke the tenant's other secrets, and with them every "
            "token the tenant has issued (clients must get new tokens).",
        )
        parser.add_argument(
            "--revoke-tokens",
            action="store_true",
            help="The tenant exists already: revoke every token it has issued, keep its "
            "secrets, print no secret.",
        )

    def handle(self, *args, name, new_secret, revoke_old, revoke_tokens, **options):
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise CommandError(f"The tenant name must be 1 to {MAX_NAME} characters.")
        if revoke_old and not new_secret:
            raise CommandError("--revoke-old needs --new-secret: a tenant keeps one secret.")
        if revoke_tokens and new_secret:
            raise CommandError("Use --revoke-tokens alone, or --new-secret --revoke-old.")
        if revoke_tokens:
            return self._revoke_tokens(name)
        try:
            with transaction.atomic():
                if new_secret:
                    tenant = self._existing(name, "--new-secret")
                    created = False
                    revoked = self._revoke_secrets(tenant) if revoke_old else 0
                else:
                    tenant = Tenant.objects.create(name=name)
                    created, revoked = True, 0
                secret = tenant.add_secret()
        except IntegrityError as exc:
            raise CommandError(
                f"Tenant {name!r} exists already; use --new-secret to add a secret to it."
            ) from exc
        action = "Created tenant" if created else "Added a secret to tenant"
        self.stdout.write(f"{action} {tenant.name!r} (id {tenant.pk}).")
        if revoke_old:
            self.stdout.write(
                f"Revoked {revoked} older secret(s) and every token issued before "
                f"(token epoch {tenant.token_epoch})."
            )
        self.stdout.write("Its Direct Line secret follows. It is not stored and not shown again:")
        self.stdout.write(secret)

    def _existing(self, name: str, option: str) -> Tenant:
        tenant = Tenant.objects.filter(name=name).first()
        if tenant is None:
            raise CommandError(f"No tenant {name!r}; create it without {option}.")
        return tenant

    def _revoke_secrets(self, tenant: Tenant) -> int:
        """Revoke the tenant's live secrets (each save moves the token epoch on, see
        ``TenantSecret.save``); make sure the epoch moves even if none was live."""
        live = list(tenant.secrets.filter(revoked=False))
        for secret in live:
            secret.revoked = True
            secret.save(update_fields=["revoked"])
        if not live:
            tenant.revoke_tokens()
        tenant.refresh_from_db(fields=["token_epoch"])
        return len(live)

    def _revoke_tokens(self, name: str):
        with transaction.atomic():
            tenant = self._existing(name, "--revoke-tokens")
            tenant.revoke_tokens()
        self.stdout.write(
            f"Revoked every token of tenant {tenant.name!r} (id {tenant.pk}); token epoch is "
            f"now {tenant.token_epoch}. Its secrets are unchanged."
        )
