from django.apps import AppConfig


class WebchatConfig(AppConfig):
    name = "webchat"
    verbose_name = "WebChat"

    def ready(self):
        # Production settings (issue 4): a deploy check, and a refusal to start with DEBUG=0.
        from django.core import checks

        from . import checks as webchat_checks
        from .bot import check_bot_setting
        from .views.conf import check_directline_limits

        checks.register(webchat_checks.check_production_settings, deploy=True)
        # Direct Line (issue 3): a bad bot path or size limit fails at `check`, not mid-request.
        checks.register(check_bot_setting)
        checks.register(check_directline_limits)
        # Issue 5: who may read /metrics.
        from .metrics_access import check_metrics_settings

        checks.register(check_metrics_settings)
        # Issue 6: the GC freezer's switch.
        from .gc_freeze import check_gc_freeze_setting

        checks.register(check_gc_freeze_setting)
        # Issue 15: token lifetimes.
        from .token_conf import check_token_settings

        checks.register(check_token_settings)
        webchat_checks.refuse_unsafe_production()
