"""System checks notifier.E001... for WEBCHAT_NOTIFIER, with override_settings."""

import time

from django.core import checks
from django.test import SimpleTestCase, override_settings

from notifier.checks import check_connection, check_settings
from tests.support.redis_server import SHARED_URL, closed_port_url, requires_shared_redis

REDIS_LAYER = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]},
    }
}
LOCAL_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def ids(messages):
    return [message.id for message in messages]


class SettingsCheckTests(SimpleTestCase):
    def test_defaults_pass(self):
        with override_settings(WEBCHAT_NOTIFIER=None):
            self.assertEqual(check_settings(), [])

    def test_valid_redis_configuration_passes(self):
        value = {"BACKEND": "redis", "URL": "redis://:pw@127.0.0.1:6379/0", "CHANNEL": "c",
                 "CAPACITY": 10, "INSTANCE_ID": "67e55044-10b1-426f-9247-bb680e5fe0c8"}
        with override_settings(WEBCHAT_NOTIFIER=value, CHANNEL_LAYERS=LOCAL_LAYER):
            self.assertEqual(check_settings(), [])

    def test_each_mistake_has_its_id(self):
        cases = [
            ({"BACKEND": "kafka"}, "notifier.E001"),
            ({"BACKEND": "no.such.Module"}, "notifier.E001"),
            ({"BACKEND": "django.conf.settings"}, "notifier.E001"),
            ({"BACKEND": ""}, "notifier.E001"),
            ({"BACKEND": "redis"}, "notifier.E002"),
            ({"BACKEND": "redis", "URL": "127.0.0.1:6379"}, "notifier.E003"),
            ({"BACKEND": "redis", "URL": "redis://:pw@h:port/0"}, "notifier.E003"),
            ({"CHANNEL": ""}, "notifier.E004"),
            ({"CHANNEL": None}, "notifier.E004"),
            ({"CAPACITY": 0}, "notifier.E005"),
            ({"CAPACITY": "100"}, "notifier.E005"),
            ({"CAPACITY": True}, "notifier.E005"),
            ({"INSTANCE_ID": "not-a-uuid"}, "notifier.E006"),
            ("redis://127.0.0.1:6379/0", "notifier.E007"),
        ]
        for value, check_id in cases:
            with self.subTest(value=value), override_settings(
                WEBCHAT_NOTIFIER=value, CHANNEL_LAYERS=LOCAL_LAYER, CACHES={}
            ):
                messages = check_settings()
                self.assertEqual(ids(messages), [check_id])
                self.assertIsInstance(messages[0], checks.Error)
                self.assertTrue(messages[0].hint)

    def test_invalid_url_message_masks_the_password(self):
        value = {"BACKEND": "redis", "URL": "redis://:hunter2@h:port/0"}
        with override_settings(WEBCHAT_NOTIFIER=value):
            [error] = check_settings()
        self.assertIn("redis://:***@h:port/0", error.msg)
        self.assertNotIn("hunter2", error.msg + error.hint)

    def test_several_mistakes_are_all_reported(self):
        value = {"BACKEND": "redis", "URL": "ftp://x", "CHANNEL": "", "CAPACITY": -1}
        with override_settings(WEBCHAT_NOTIFIER=value):
            self.assertEqual(ids(check_settings()),
                             ["notifier.E003", "notifier.E004", "notifier.E005"])

    def test_missing_url_is_fine_when_a_redis_layer_provides_one(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "redis"}, CHANNEL_LAYERS=REDIS_LAYER):
            self.assertNotIn("notifier.E002", ids(check_settings()))

    def test_redis_backend_with_a_cross_process_layer_warns(self):
        value = {"BACKEND": "redis", "URL": "redis://127.0.0.1:6379/0"}
        with override_settings(WEBCHAT_NOTIFIER=value, CHANNEL_LAYERS=REDIS_LAYER):
            messages = check_settings()
        self.assertEqual(ids(messages), ["notifier.W001"])
        self.assertIsInstance(messages[0], checks.Warning)
        self.assertIn("channels_redis.core.RedisChannelLayer", messages[0].msg)

    def test_memory_backend_with_a_cross_process_layer_does_not_warn(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "memory"}, CHANNEL_LAYERS=REDIS_LAYER):
            self.assertEqual(check_settings(), [])

    def test_unknown_keys_warn(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "memory", "CHANEL": "x"}):
            messages = check_settings()
        self.assertEqual(ids(messages), ["notifier.W002"])
        self.assertIn("'CHANEL'", messages[0].msg)

    def test_checks_are_registered_with_the_notifier_tag(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "kafka"}):
            messages = checks.run_checks(tags=["notifier"])
        self.assertIn("notifier.E001", ids(messages))


class ConnectionCheckTests(SimpleTestCase):
    def test_memory_backend_touches_no_network(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "memory"}):
            self.assertEqual(check_connection(), [])

    def test_invalid_settings_are_left_to_the_settings_check(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "redis", "URL": "nope"}):
            self.assertEqual(check_connection(), [])

    def test_closed_port_fails_fast_with_the_masked_url(self):
        url = closed_port_url(password="hunter2")
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "redis", "URL": url}):
            started = time.monotonic()
            messages = check_connection()
            elapsed = time.monotonic() - started
        self.assertEqual(ids(messages), ["notifier.E010"])
        self.assertIn(url.replace("hunter2", "***"), messages[0].msg)
        self.assertNotIn("hunter2", messages[0].msg)
        self.assertLess(elapsed, 3.0)

    @requires_shared_redis
    def test_answering_redis_passes(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "redis", "URL": SHARED_URL}):
            self.assertEqual(check_connection(), [])
