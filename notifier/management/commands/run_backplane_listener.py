"""``manage.py run_backplane_listener``: a thin front for ``notifier.service.ListenerService``."""

import uuid

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from notifier.checks import bridge_process
from notifier.conf import get_settings, mask_url
from notifier.service import ConsoleObserver, ListenerService


def _uuid(value):
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None


class Command(BaseCommand):
    help = (
        "Subscribe to the backplane's global Redis channel and re-dispatch each notification "
        "into the configured channel layer, until SIGINT or SIGTERM (exit 0)."
    )
    service_class = ListenerService

    def check(self, *args, **kwargs):
        """System checks as the bridge: W001 (double delivery) is about server processes."""
        with bridge_process():
            return super().check(*args, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true",
            help="Connect and subscribe once and make one probe round trip through Redis "
            "(as /readyz does), then exit: 0 when it worked, 1 with the reason.",
        )
        parser.add_argument(
            "--instance-id", type=_uuid, metavar="UUID",
            help="The instance id whose messages are dropped as self-echo (default: "
            "BACKPLANE['INSTANCE_ID'], else a fresh one). Give a replica's id to share "
            "its self-echo domain.",
        )
        parser.add_argument(
            "--channel", metavar="NAME",
            help="The pub/sub channel to listen on (default: BACKPLANE['CHANNEL']).",
        )

    def handle(self, *args, **options):
        overrides = {}
        if options["instance_id"] is not None:
            overrides["instance_id"] = options["instance_id"]
        if options["channel"] is not None:
            if not options["channel"].strip():
                raise CommandError("--channel must not be empty")
            overrides["channel"] = options["channel"]
        notifier_settings = get_settings()
        try:
            notifier = notifier_settings.backend_class.from_settings(notifier_settings, **overrides)
            observer = ConsoleObserver(self.stdout, options["verbosity"])
            service = self.service_class(notifier, observer=observer)
        except (ImproperlyConfigured, ValueError, TypeError) as exc:
            raise CommandError(
                f"{exc} The listener needs {notifier_settings.name}['BACKEND'] = 'redis' and a "
                "Redis URL."
            ) from exc
        try:
            service.verify()
            round_trip = service.check() if options["check"] else None
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if options["check"]:
            listener = service.listener
            probe = "" if round_trip is None else f"; probe round trip {round_trip * 1000:.1f} ms"
            self.stdout.write(
                f"ok: subscribed to {listener.channel!r} at {mask_url(listener.url)}{probe}"
            )
            return
        service.run()
