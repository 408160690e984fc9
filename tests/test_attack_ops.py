"""What the operations surface tells an attacker: ``/readyz`` and the deploy checks.

``/readyz`` showed the database's host, role and error text to anyone: now the public answer
says only which check failed; the reasons go to the log, and to the callers that may read
``/metrics``. ``check --deploy`` reported W001-W003 for webchat's subclasses of Django's
middleware, and because Django's security checks look for the dotted paths of its own
classes, it skipped the HSTS, SSL-redirect and secure-cookie checks that depend on them.
"""

import json
from unittest import mock

from django.core import checks
from django.db import OperationalError
from django.test import SimpleTestCase, TestCase, override_settings

from webchat.middleware_list import MiddlewareList
from webchat.ops import OpsEndpoints

from .test_ops_endpoints import call, inner_app

SECRET_TEXT = 'connection to server at "db.internal" (10.0.0.7), port 5432 failed: role "webchat"'


class PublicReadyzTests(TestCase):
    async def readyz(self, client):
        failure = OperationalError(SECRET_TEXT)
        with (mock.patch("webchat.ops._ping_database", side_effect=failure),
              self.assertLogs("webchat.ops", "WARNING") as logs):
            status, _, body = await call(OpsEndpoints(inner_app), "/readyz", client=client)
        return status, body, "\n".join(logs.output)

    async def test_a_stranger_learns_only_which_check_failed(self):
        status, body, logged = await self.readyz(("203.0.113.9", 40000))
        self.assertEqual(status, 503)
        self.assertEqual(json.loads(body), {
            "status": "unavailable",
            "problems": ["database: unavailable"],
            "checks": {"database": {"ok": False}, "backplane": {"ok": True},
                       "catch_up": {"ok": True}},
        })
        for secret in ("db.internal", "10.0.0.7", "webchat", "OperationalError"):
            self.assertNotIn(secret.encode(), body)
        self.assertIn("db.internal", logged)  # the operator still finds the reason

    async def test_a_forwarded_header_does_not_make_a_stranger_an_operator(self):
        failure = OperationalError(SECRET_TEXT)
        with (mock.patch("webchat.ops._ping_database", side_effect=failure),
              self.assertLogs("webchat.ops", "WARNING")):
            _, _, body = await call(OpsEndpoints(inner_app), "/readyz",
                                    client=("203.0.113.9", 40000),
                                    headers=[("X-Forwarded-For", "127.0.0.1")])
        self.assertNotIn(b"db.internal", body)

    @override_settings(WEBCHAT_METRICS={"TOKEN": "t" * 32})
    async def test_an_operator_with_the_metrics_token_gets_the_reason(self):
        failure = OperationalError(SECRET_TEXT)
        with (mock.patch("webchat.ops._ping_database", side_effect=failure),
              self.assertLogs("webchat.ops", "WARNING")):
            _, _, body = await call(OpsEndpoints(inner_app), "/readyz",
                                    client=("203.0.113.9", 40000),
                                    headers=[("Authorization", "Bearer " + "t" * 32)])
        self.assertIn(b"db.internal", body)


# What a production deployment of these settings has; check --deploy must find each gap.
PRODUCTION = {
    "DEBUG": False,
    "SECRET_KEY": "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz",
    "WEBCHAT_TOKEN_SIGNING_KEY": "s" * 10 + "0123456789abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": ["chat.example.com"],
    "CORS_ALLOWED_ORIGINS": ["https://www.example.com"],
    "CORS_ALLOW_ALL_ORIGINS": False,
    "SECURE_HSTS_SECONDS": 31536000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "WEBCHAT_ADMIN_PATH": "ops-7f3a9c/",
}


def deploy_ids(**overrides):
    with override_settings(**{**PRODUCTION, **overrides}):
        from django.conf import settings

        # override_settings hands MIDDLEWARE over unchanged: the project's MiddlewareList.
        assert isinstance(settings.MIDDLEWARE, MiddlewareList)
        found = checks.run_checks(include_deployment_checks=True)
    return sorted({m.id for m in found if m.level >= checks.WARNING})


class DeployCheckTests(SimpleTestCase):
    def test_the_subclassed_middleware_raise_no_false_w001_to_w003(self):
        ids = deploy_ids()
        for false_alarm in ("security.W001", "security.W002", "security.W003"):
            self.assertNotIn(false_alarm, ids)
        self.assertEqual([i for i in ids if i.startswith(("security.", "webchat."))], [])

    def test_each_real_gap_is_reported(self):
        cases = {
            "security.W004": {"SECURE_HSTS_SECONDS": 0},
            "security.W008": {"SECURE_SSL_REDIRECT": False},
            "security.W012": {"SESSION_COOKIE_SECURE": False},
            "security.W016": {"CSRF_COOKIE_SECURE": False},
            "webchat.W106": {"WEBCHAT_ADMIN_PATH": "admin/"},
        }
        for expected, change in cases.items():
            with self.subTest(expected):
                self.assertIn(expected, deploy_ids(**change))

    def test_a_middleware_list_knows_subclasses(self):
        middleware = MiddlewareList(["webchat.middleware.SecurityMiddleware"])
        self.assertIn("django.middleware.security.SecurityMiddleware", middleware)
        self.assertIn("webchat.middleware.SecurityMiddleware", middleware)
        self.assertNotIn("django.middleware.csrf.CsrfViewMiddleware", middleware)
        self.assertNotIn("no.such.Middleware", middleware)
