"""Production settings (webchat/checks.py): DEBUG=0 refuses to start without real ones."""

import os
import subprocess
import sys
from pathlib import Path

from django.test import SimpleTestCase, override_settings

from webchat.checks import check_production_settings, production_errors

ROOT = Path(__file__).resolve().parent.parent

REAL = {
    "SECRET_KEY": "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz",
    "WEBCHAT_TOKEN_SIGNING_KEY": "s" * 10 + "0123456789abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": ["chat.example.com"],
    "CORS_ALLOW_ALL_ORIGINS": False,
    "CORS_ALLOWED_ORIGINS": ["https://www.example.com"],
}
REAL_ENV = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": REAL["SECRET_KEY"],
    "WEBCHAT_TOKEN_SIGNING_KEY": REAL["WEBCHAT_TOKEN_SIGNING_KEY"],
    "ALLOWED_HOSTS": "chat.example.com",
    "CORS_ALLOWED_ORIGINS": "https://www.example.com",
}


def ids(errors):
    return sorted(error.id for error in errors)


class ProductionErrorsTests(SimpleTestCase):
    @override_settings(**REAL)
    def test_real_settings_pass(self):
        self.assertEqual(production_errors(), [])
        self.assertEqual(check_production_settings(), [])

    def test_each_missing_setting_is_named_by_its_id(self):
        cases = {
            "webchat.E101": {"SECRET_KEY": "dev-insecure-secret-key-change-me"},
            "webchat.E102": {"WEBCHAT_TOKEN_SIGNING_KEY": None},
            "webchat.E103": {"ALLOWED_HOSTS": ["*"]},
            "webchat.E104": {"CORS_ALLOWED_ORIGINS": []},
            "webchat.E105": {"CORS_ALLOW_HEADERS": ["authorization", "content-type"]},
        }
        for error_id, change in cases.items():
            with self.subTest(error_id), override_settings(**{**REAL, **change}):
                self.assertEqual(ids(production_errors()), [error_id])

    def test_weak_or_reused_signing_key_is_refused(self):
        for key in ("short", "a" * 64, REAL["SECRET_KEY"]):
            with (
                self.subTest(key=key[:8]),
                override_settings(**{**REAL, "WEBCHAT_TOKEN_SIGNING_KEY": key}),
            ):
                self.assertEqual(ids(production_errors()), ["webchat.E102"])

    def test_development_hosts_and_allow_all_cors_are_refused(self):
        with override_settings(
            **{**REAL, "ALLOWED_HOSTS": ["127.0.0.1", "testserver"], "CORS_ALLOW_ALL_ORIGINS": True}
        ):
            self.assertEqual(ids(production_errors()), ["webchat.E103", "webchat.E104"])


def run(args, env, timeout=60):
    full_env = {k: v for k, v in os.environ.items() if k not in REAL_ENV}
    full_env.update(env)
    return subprocess.run(
        args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


class RefusalToStartTests(SimpleTestCase):
    """Real processes: the same settings module the service starts with."""

    def test_daphne_refuses_to_start_with_debug_off_and_development_settings(self):
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "0"]
        result = run([*daphne, "webchat.asgi:application"], {"DEBUG": "0"})
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("Refusing to start with DEBUG=0", result.stderr)
        for error_id in ("E101", "E102", "E103", "E104"):
            self.assertIn(f"webchat.{error_id}", result.stderr)
        # It names the variables to set, never their (secret) values.
        for name in ("DJANGO_SECRET_KEY", "WEBCHAT_TOKEN_SIGNING_KEY", "CORS_ALLOWED_ORIGINS"):
            self.assertIn(name, result.stderr)

    def test_real_production_settings_start_and_pass_the_deploy_check(self):
        result = run([sys.executable, "manage.py", "check", "--deploy"], REAL_ENV)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("webchat.E1", result.stdout + result.stderr)
