from django.apps import AppConfig


class WebchatConfig(AppConfig):
    name = "webchat"
    verbose_name = "WebChat"

    def ready(self):
        # Production settings (issue 4): a deploy check, and a refusal to start with DEBUG=0.
        from django.core import checks

        from . import checks as webchat_checks

        checks.register(webchat_checks.check_production_settings, deploy=True)
        checks.register(webchat_checks.check_admin_exposure, deploy=True)
        # Every WEBCHAT_* setting (webchat/conf.py) fails at `check`, not mid-request.
        checks.register(webchat_checks.check_settings)
        # Issue 15: a token TTL for tests only is a warning.
        from .tokens import check_short_ttl

        checks.register(check_short_ttl)
        webchat_checks.refuse_unsafe_production()
