"""webchat.conf: one lazily read snapshot of every WEBCHAT_* setting, checked by system checks."""

import os
import subprocess
import sys
from pathlib import Path

from django.core.checks import run_checks
from django.test import SimpleTestCase, override_settings

from webchat import conf
from webchat.checks import check_settings
from webchat.conf import DEFAULTS, InvalidWebchatConfiguration, WebchatSettings, get_settings

ROOT = Path(__file__).resolve().parent.parent


def check_ids(**overrides):
    with override_settings(**overrides):
        return sorted({error.id for error in check_settings()})


class SnapshotTests(SimpleTestCase):
    def test_defaults_are_the_reference_values(self):
        snapshot = WebchatSettings({})
        self.assertEqual(
            (snapshot.max_sockets_per_tenant, snapshot.max_sockets_per_conversation,
             snapshot.idle_timeout, snapshot.max_replay, snapshot.max_frame_bytes),
            (1000, 5, 300, 1000, 1024 * 1024),
        )
        self.assertEqual(
            (snapshot.max_activity_bytes, snapshot.max_file_bytes, snapshot.max_upload_files,
             snapshot.max_poll_activities, snapshot.max_poll_bytes, snapshot.db_threads),
            (256 * 1024, 4 * 1024 * 1024, 10, 1000, 4 * 1024 * 1024, 4),
        )
        self.assertEqual(snapshot.errors(), [])

    def test_read_lazily_and_reset_on_setting_changed(self):
        before = get_settings()
        self.assertIs(get_settings(), before)
        with override_settings(WEBCHAT_STREAM={"MAX_REPLAY": 7}):
            self.assertIsNot(get_settings(), before)
            self.assertEqual(conf.settings.max_replay, 7)
        self.assertEqual(conf.settings.max_replay, 1000)

    def test_other_settings_keep_the_snapshot(self):
        before = get_settings()
        with override_settings(USE_TZ=True):
            self.assertIs(get_settings(), before)

    def test_every_key_is_validated_by_a_property(self):
        # The pattern for a new key: a default and a property reading it. A default that no
        # property reads would be a documented setting that does nothing.
        for name, default in DEFAULTS.items():
            keys = list(default) if isinstance(default, dict) else [None]
            for key in keys:
                value = {key: object()} if key else object()
                messages = [str(exc) for exc in WebchatSettings({name: value}).errors()]
                self.assertTrue(any((key or name) in m for m in messages), (name, key))

    def test_the_check_reads_every_property(self):
        self.assertIn("max_poll_bytes", WebchatSettings.property_names())
        self.assertIn("bot", WebchatSettings.property_names())


class ErrorsCarryTheirCheckIdTests(SimpleTestCase):
    CASES = [
        ({"WEBCHAT_BOT": "webchat.bot.no_such_bot"}, "webchat.E001", "bot"),
        ({"WEBCHAT_BOT": 12}, "webchat.E001", "bot"),
        ({"WEBCHAT_DIRECTLINE": "big"}, "webchat.E002", "max_activity_bytes"),
        ({"WEBCHAT_DIRECTLINE": {"MAX_POLL_BYTES": 0}}, "webchat.E002", "max_poll_bytes"),
        ({"WEBCHAT_GC_FREEZE": "no"}, "webchat.E003", "gc_freeze"),
        ({"WEBCHAT_STREAM": {"IDLE_TIMEOUT": "300"}}, "webchat.E004", "idle_timeout"),
        ({"WEBCHAT_STREAM": {"CATCH_UP_INTERVAL": 0}}, "webchat.E004", "catch_up_interval"),
        ({"WEBCHAT_STREAM": {"CATCH_UP_INTERVAL": True}}, "webchat.E004", "catch_up_interval"),
        ({"WEBCHAT_STREAM": {"MAX_REPLAY": True}}, "webchat.E004", "max_replay"),
        ({"WEBCHAT_STREAM": "300"}, "webchat.E004", "idle_timeout"),
        ({"WEBCHAT_BOT_WORKERS": 0}, "webchat.E005", "bot_workers"),
        ({"WEBCHAT_BOT_MAX_PENDING": "9"}, "webchat.E005", "bot_max_pending"),
        ({"WEBCHAT_DEMO_PEERS": "http://a"}, "webchat.E006", "demo_peers"),
        ({"WEBCHAT_DEMO_PEERS": ["ftp://a"]}, "webchat.E006", "demo_peers"),
        ({"WEBCHAT_TOKEN_SIGNING_KEY": b"bytes-key"}, "webchat.E007", "token_signing_key"),
        ({"WEBCHAT_METRICS": {"ENABLED": "yes"}}, "webchat.E021", "metrics_enabled"),
    ]

    def test_the_property_and_the_check_agree(self):
        for overrides, check_id, name in self.CASES:
            with self.subTest(overrides=overrides), override_settings(**overrides):
                with self.assertRaises(InvalidWebchatConfiguration) as raised:
                    getattr(conf.settings, name)
                self.assertEqual(raised.exception.check_id, check_id)
                setting = next(iter(overrides))
                self.assertIn(setting, str(raised.exception))
                self.assertIn(check_id, [e.id for e in run_checks()])

    def test_each_bad_key_is_its_own_error(self):
        with override_settings(WEBCHAT_STREAM={"MAX_REPLAY": 0, "IDLE_TIMEOUT": -1}):
            messages = [e.msg for e in check_settings()]
        self.assertEqual(len(messages), 2, messages)
        self.assertTrue(any("MAX_REPLAY" in m for m in messages))
        self.assertTrue(any("IDLE_TIMEOUT" in m for m in messages))

    def test_unknown_keys_are_errors_beside_bad_values(self):
        with override_settings(WEBCHAT_STREAM={"IDLE": 1, "MAX_REPLAY": 0}):
            errors = check_settings()
            self.assertEqual(conf.settings.idle_timeout, 300)
        self.assertEqual([e.id for e in errors], ["webchat.E004", "webchat.E004"])
        self.assertTrue(any("'IDLE'" in e.msg for e in errors))

    def test_valid_values_pass(self):
        self.assertEqual(check_ids(WEBCHAT_STREAM={"IDLE_TIMEOUT": 0.5}), [])
        self.assertEqual(check_ids(WEBCHAT_BOT=None, WEBCHAT_DEMO_PEERS=["http://a:1/"]), [])
        self.assertEqual(check_ids(WEBCHAT_DIRECTLINE={"MAX_POLL_BYTES": 1}), [])


class StartupRefusalTests(SimpleTestCase):
    def test_the_asgi_application_refuses_a_broken_setting(self):
        # A bad WEBCHAT_STREAM used to raise on every connection: now daphne cannot start.
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webchat.settings",
               "WEBCHAT_STREAM_IDLE_TIMEOUT": "-5", "DEBUG": "1"}
        result = subprocess.run(
            [sys.executable, "-c", "import webchat.asgi"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("webchat.E004", result.stderr)
        self.assertIn("IDLE_TIMEOUT", result.stderr)
