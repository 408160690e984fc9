"""Redis passwords stay out of Django's error reports (notifier.reporting): through Django's
own ExceptionReporter and technical_500_response, with passwords in REDIS_URL, BACKPLANE's
URL, WEBCHAT_NOTIFIER's URL, a URL's ``?ssl_password=`` and a traceback's local variable;
and W010 when the active filter would show one."""

import sys

from django.test import RequestFactory, SimpleTestCase, override_settings
from django.views.debug import (
    ExceptionReporter,
    get_default_exception_reporter_filter,
    technical_500_response,
)

from notifier.checks import check_error_reports
from notifier.reporting import ExceptionReporterFilter, mask_text

PASSWORD = "url-password-0123456789"
SENTINEL_PASSWORD = "sentinel-password-98765"
KEY_PASSWORD = "tls-key-passphrase-4242"
OURS = "notifier.reporting.ExceptionReporterFilter"
DJANGOS = "django.views.debug.SafeExceptionReporterFilter"

SECRETS = (PASSWORD, SENTINEL_PASSWORD, KEY_PASSWORD)

SETTINGS = {
    "REDIS_URL": f"redis://webchat:{PASSWORD}@redis.internal:6379/0",
    "WEBCHAT_NOTIFIER": {"BACKEND": "redis",
                         "URL": f"rediss://:{PASSWORD}@redis.internal:6380/0"
                                f"?ssl_password={KEY_PASSWORD}"},
    "BACKPLANE": {"BACKEND": "redis",
                  "URL": f"redis+sentinel://webchat:{PASSWORD}@10.0.0.1:26379/m/0"
                         f"?sentinel_password={SENTINEL_PASSWORD}"},
}


def failing_view(request):
    url = SETTINGS["REDIS_URL"]  # a local variable Django shows in the traceback
    raise RuntimeError(f"cannot reach the backplane ({len(url)})")


def exc_info():
    try:
        failing_view(None)
    except RuntimeError:
        return sys.exc_info()


class ReporterTests(SimpleTestCase):
    def setUp(self):
        # Django caches the first filter it builds for good (a process has one setting).
        get_default_exception_reporter_filter.cache_clear()
        self.addCleanup(get_default_exception_reporter_filter.cache_clear)

    def reports(self):
        request = RequestFactory().get("/boom", HTTP_X_REDIS=SETTINGS["REDIS_URL"])
        info = exc_info()
        reporter = ExceptionReporter(request, *info)
        response = technical_500_response(request, *info)
        return {"html": reporter.get_traceback_html(), "text": reporter.get_traceback_text(),
                "500 page": response.content.decode()}

    @override_settings(DEBUG=True, DEFAULT_EXCEPTION_REPORTER_FILTER=OURS, **SETTINGS)
    def test_no_password_in_the_500_page_or_the_admins_mail(self):
        for name, report in self.reports().items():
            with self.subTest(report=name):
                for secret in SECRETS:
                    self.assertFalse(secret in report, f"{secret} is in the {name}")
                # Still useful: the hosts and users are there.
                self.assertIn("redis://webchat:***@redis.internal:6379/0", report)
                self.assertIn("10.0.0.1:26379", report)
                self.assertIn("cannot reach the backplane", report)

    @override_settings(DEBUG=True, DEFAULT_EXCEPTION_REPORTER_FILTER=DJANGOS, **SETTINGS)
    def test_djangos_own_filter_shows_them_and_w010_says_so(self):
        report = self.reports()["500 page"]
        self.assertTrue(PASSWORD in report)  # why this module exists
        [warning] = check_error_reports()
        self.assertEqual(warning.id, "notifier.W010")
        self.assertIn("BACKPLANE", warning.msg)
        self.assertIn("REDIS_URL", warning.msg)
        self.assertIn("WEBCHAT_NOTIFIER", warning.msg)
        self.assertIn(OURS, warning.hint)
        for secret in SECRETS:
            self.assertNotIn(secret, warning.msg + warning.hint)

    @override_settings(DEFAULT_EXCEPTION_REPORTER_FILTER=OURS, **SETTINGS)
    def test_no_warning_with_the_packages_filter_or_a_subclass(self):
        self.assertEqual(check_error_reports(), [])
        with override_settings(DEFAULT_EXCEPTION_REPORTER_FILTER=f"{__name__}.ProjectFilter"):
            self.assertEqual(check_error_reports(), [])

    @override_settings(DEFAULT_EXCEPTION_REPORTER_FILTER=DJANGOS, REDIS_URL="redis://h:6379/0",
                       WEBCHAT_NOTIFIER={"BACKEND": "redis", "URL": "redis://h:6379/0"})
    def test_no_warning_when_no_url_has_a_password(self):
        self.assertEqual(check_error_reports(), [])

    def test_mask_text(self):
        self.assertEqual(mask_text("x redis://u:p%40ss@h:1/0?ssl_password=k&db=1 y"),
                         "x redis://u:***@h:1/0?ssl_password=***&db=1 y")
        self.assertEqual(mask_text("redis://h:1/0 and user@example.com"),
                         "redis://h:1/0 and user@example.com")


class ProjectFilter(ExceptionReporterFilter):
    """A project's own filter, built on the package's."""


class MaskedEverywhereTests(SimpleTestCase):
    """The reprs and named failures of every part that holds the URL or the TLS settings."""

    def test_reprs_and_named_failures_mask_every_password(self):
        import redis

        from notifier.backends.redis import RedisNotifier
        from notifier.failures import explain
        from notifier.layers import LocalChannelLayer
        from notifier.tls import TLSConfig

        url = f"rediss://webchat:{PASSWORD}@127.0.0.1:1/0?ssl_password={KEY_PASSWORD}"
        notifier = RedisNotifier(url, channel="c", channel_layer=LocalChannelLayer(),
                                 tls=TLSConfig(certfile="/c.pem", key_password=KEY_PASSWORD))
        listener = notifier.listener(resync=False)
        texts = [repr(notifier), repr(notifier.transport), repr(listener),
                 repr(listener.probe), repr(notifier.transport.tls)]
        for error in (redis.AuthenticationError("invalid username-password pair"),
                      redis.exceptions.NoPermissionError("this user has no permissions to "
                                                         "run the 'publish' command")):
            texts.append(str(explain(error, url)))
        for text in texts:
            for secret in SECRETS:
                self.assertNotIn(secret, text)
        self.assertIn("rediss://webchat:***@127.0.0.1:1/0?ssl_password=***", texts[0])
        self.assertIn("authentication failed for user 'webchat'", texts[-2])
