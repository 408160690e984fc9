"""The test runner: Django's, plus one closing line that CI tools can read."""

from django.conf import settings
from django.core.signals import setting_changed
from django.test.runner import DiscoverRunner


class CountingTestRunner(DiscoverRunner):
    def setup_test_environment(self, **kwargs):
        super().setup_test_environment(**kwargs)
        # The suite posts faster than any client: rate limits are off unless a test turns
        # them on (override_settings(WEBCHAT_LIMITS=...), tests/test_limits_*.py).
        value = {**getattr(settings, "WEBCHAT_LIMITS", {}), "ENABLED": False}
        settings.WEBCHAT_LIMITS = value
        setting_changed.send(self.__class__, setting="WEBCHAT_LIMITS", value=value, enter=True)

    def suite_result(self, suite, result, **kwargs):
        failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
        skipped = len(result.skipped)
        passed = result.testsRun - failed - skipped
        print(f"tests: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
        return super().suite_result(suite, result, **kwargs)
