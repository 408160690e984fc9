"""The notifier app: a Redis pub/sub backplane for Django Channels (wire v1)."""

from django.apps import AppConfig
from django.core import checks


class NotifierConfig(AppConfig):
    name = "notifier"
    verbose_name = "Notifier backplane"

    def ready(self):
        """Register the system checks and connect the receivers (runs once per process)."""
        # conf and runtime connect their setting_changed receivers when imported.
        from . import conf, runtime  # noqa: F401
        from .checks import (
            TAG,
            check_connection,
            check_dependencies,
            check_error_reports,
            check_settings,
            check_tls,
        )
        from .receivers import publish_after_commit, publish_change_after_commit
        from .signals import changed, watermark_bumped

        checks.register(check_settings, TAG)
        checks.register(check_dependencies, TAG)
        checks.register(check_tls, TAG)
        checks.register(check_error_reports, TAG)
        checks.register(check_connection, TAG)
        watermark_bumped.connect(publish_after_commit, dispatch_uid="notifier.publish_after_commit")
        changed.connect(publish_change_after_commit, dispatch_uid="notifier.publish_change")
