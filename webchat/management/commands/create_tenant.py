"""``manage.py create_tenant NAME``: a new tenant and its Direct Line secret.

The secret is stored hashed, so this is the only time it is shown: it is the last line of
the output, alone, so scripts can take it with ``tail -n 1``.
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
            help="The tenant exists already: add another secret to it (old ones stay valid).",
        )

    def handle(self, *args, name, new_secret, **options):
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise CommandError(f"The tenant name must be 1 to {MAX_NAME} characters.")
        try:
            with transaction.atomic():
                if new_secret:
                    tenant = Tenant.objects.filter(name=name).first()
                    if tenant is None:
                        raise CommandError(f"No tenant {name!r}; create it without --new-secret.")
                    created = False
                else:
                    tenant = Tenant.objects.create(name=name)
                    created = True
                secret = tenant.add_secret()
        except IntegrityError as exc:
            raise CommandError(
                f"Tenant {name!r} exists already; use --new-secret to add a secret to it."
            ) from exc
        action = "Created tenant" if created else "Added a secret to tenant"
        self.stdout.write(f"{action} {tenant.name!r} (id {tenant.pk}).")
        self.stdout.write("Its Direct Line secret follows. It is not stored and not shown again:")
        self.stdout.write(secret)
