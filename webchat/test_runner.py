"""The test runner: Django's, plus one closing line that CI tools can read."""

from django.test.runner import DiscoverRunner


class CountingTestRunner(DiscoverRunner):
    def suite_result(self, suite, result, **kwargs):
        failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
        skipped = len(result.skipped)
        passed = result.testsRun - failed - skipped
        print(f"tests: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
        return super().suite_result(suite, result, **kwargs)
