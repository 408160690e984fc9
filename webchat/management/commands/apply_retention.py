"""``manage.py apply_retention``: delete conversations, activities and uploads older than
``WEBCHAT_RETENTION_DAYS`` (or ``--days``). Run it daily (README "Limits and quotas")."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from webchat.conf import settings
from webchat.retention import Retention


class Command(BaseCommand):
    help = (
        "Delete conversations, activities and uploaded files older than "
        "WEBCHAT_RETENTION_DAYS (or --days)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=float,
            help="Keep this many days instead of WEBCHAT_RETENTION_DAYS (e.g. 30; 0.5 is 12 h).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows deleted per transaction."
        )

    def handle(self, *args, days, dry_run, batch_size, **options):
        days = settings.retention_days if days is None else days
        if days is None:
            raise CommandError(
                "No retention is set: set WEBCHAT_RETENTION_DAYS (e.g. 30) or pass --days."
            )
        if days <= 0 or batch_size <= 0:
            raise CommandError("--days and --batch-size must be positive.")
        cutoff = timezone.now() - timedelta(days=days)
        report = Retention(cutoff, batch=batch_size, dry_run=dry_run).run()
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} {report} older than {cutoff.isoformat()}.")
