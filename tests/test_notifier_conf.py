"""WEBCHAT_NOTIFIER: lazy reads, reset on setting_changed, URL fallback, masking."""

import uuid

from django.test import SimpleTestCase, override_settings

from notifier import conf
from notifier.backends.memory import InMemoryNotifier
from notifier.backends.redis import RedisNotifier
from notifier.exceptions import InvalidNotifierConfiguration

REDIS_LAYER = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://layer-host:6380/2"]},
    }
}
REDIS_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": ["redis://cache-host:6381/3", "redis://replica:6381/3"],
    },
}


class LazySettingsTests(SimpleTestCase):
    def test_defaults_without_the_setting(self):
        with override_settings(WEBCHAT_NOTIFIER=None):
            settings = conf.get_settings()
            self.assertIs(settings.backend_class, InMemoryNotifier)
            self.assertIsNone(settings.url)
            self.assertEqual(settings.channel, "greentic:webchat:notify")
            self.assertEqual(settings.capacity, 1000)
            self.assertEqual(settings.instance_id, conf.process_instance_id())

    def test_snapshot_is_cached_and_reset_when_the_setting_changes(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "memory", "CHANNEL": "one"}):
            first = conf.get_settings()
            self.assertIs(conf.get_settings(), first)
            self.assertEqual(first.channel, "one")
            with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "memory", "CHANNEL": "two"}):
                self.assertEqual(conf.get_settings().channel, "two")
            self.assertEqual(conf.get_settings().channel, "one")

    def test_unrelated_settings_keep_the_snapshot(self):
        first = conf.get_settings()
        with override_settings(TIME_ZONE="Europe/Paris"):
            self.assertIs(conf.get_settings(), first)

    def test_aliases_are_case_insensitive_and_dotted_paths_work(self):
        for backend in ["redis", "Redis", "notifier.backends.redis.RedisNotifier"]:
            with override_settings(WEBCHAT_NOTIFIER={"BACKEND": backend, "URL": "redis://h/0"}):
                self.assertIs(conf.get_settings().backend_class, RedisNotifier)

    def test_instance_id_from_the_setting_in_any_spelling(self):
        value = "67E55044-10B1-426F-9247-BB680E5FE0C8"
        with override_settings(WEBCHAT_NOTIFIER={"INSTANCE_ID": value}):
            self.assertEqual(conf.get_settings().instance_id, uuid.UUID(value))

    def test_process_instance_id_is_stable(self):
        self.assertEqual(conf.process_instance_id(), conf.process_instance_id())

    def test_invalid_values_raise_with_their_check_id(self):
        cases = [
            ({"BACKEND": "nosuch"}, "backend_class", "notifier.E001"),
            ({"BACKEND": "redis"}, "url", "notifier.E002"),
            ({"BACKEND": "redis", "URL": "http://h/0"}, "url", "notifier.E003"),
            ({"CHANNEL": " "}, "channel", "notifier.E004"),
            ({"CAPACITY": 0}, "capacity", "notifier.E005"),
            ({"INSTANCE_ID": "replica-1"}, "instance_id", "notifier.E006"),
        ]
        for value, prop, check_id in cases:
            with self.subTest(value=value), override_settings(WEBCHAT_NOTIFIER=value):
                with self.assertRaises(InvalidNotifierConfiguration) as caught:
                    getattr(conf.get_settings(), prop)
                self.assertEqual(caught.exception.check_id, check_id)


class UrlFallbackTests(SimpleTestCase):
    def test_explicit_url_wins(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "redis", "URL": "redis://mine/1"},
                               CHANNEL_LAYERS=REDIS_LAYER):
            self.assertEqual(conf.get_settings().url, "redis://mine/1")

    def test_channel_layer_hosts_as_url_dict_or_tuple(self):
        hosts = [
            (["redis://layer-host:6380/2"], "redis://layer-host:6380/2"),
            ([{"address": "rediss://secure:6390/0", "ssl_cert_reqs": None}],
             "rediss://secure:6390/0"),
            ([("tuple-host", 6379)], "redis://tuple-host:6379/0"),
        ]
        for value, expected in hosts:
            layers = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                                  "CONFIG": {"hosts": value}}}
            with self.subTest(hosts=value), override_settings(
                WEBCHAT_NOTIFIER={"BACKEND": "redis"}, CHANNEL_LAYERS=layers
            ):
                settings = conf.get_settings()
                self.assertEqual(settings.url, expected)
                self.assertEqual(settings.url_and_source[1], "CHANNEL_LAYERS['default']")

    def test_redis_cache_location(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "redis"}, CACHES=REDIS_CACHE):
            settings = conf.get_settings()
            self.assertEqual(settings.url, "redis://cache-host:6381/3")
            self.assertEqual(settings.url_and_source[1], "CACHES['redis']")

    def test_memory_backend_needs_no_url(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "memory"}):
            self.assertIsNone(conf.get_settings().url)

    def test_missing_url_names_what_to_set(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "redis"}), self.assertRaises(
            InvalidNotifierConfiguration
        ) as caught:
            _ = conf.get_settings().url
        self.assertIn('WEBCHAT_NOTIFIER["URL"]', caught.exception.hint)
        self.assertIn("CHANNEL_LAYERS", caught.exception.hint)


class MaskUrlTests(SimpleTestCase):
    def test_masks_passwords_and_keeps_the_rest(self):
        cases = {
            "redis://:s3cret@host:6379/0": "redis://:***@host:6379/0",
            "redis://user:s3cret@host/1": "redis://user:***@host/1",
            "rediss://host:6379/0?password=s3cret&db=2": "rediss://host:6379/0?password=***&db=2",
            "redis://host:6379/0": "redis://host:6379/0",
            "unix:///run/redis.sock": "unix:///run/redis.sock",
            "redis://:s3cret@host:notaport/0": "redis://:***@host:notaport/0",
        }
        for url, masked in cases.items():
            with self.subTest(url=url):
                self.assertEqual(conf.mask_url(url), masked)
                self.assertNotIn("s3cret", conf.mask_url(url))

    def test_unparsable_urls_are_masked_too(self):
        self.assertEqual(conf.mask_url("redis://:s3cret@[::1/0"), "redis://***@[::1/0")

    def test_validate_url(self):
        for url in ["redis://h:6379/0", "rediss://u:p@h/2", "unix:///tmp/redis.sock"]:
            conf.validate_url(url)
        for url in ["", "h:6379", "http://h/0", "redis://h:notaport/0", "redis:///0"]:
            with self.subTest(url=url), self.assertRaises(ValueError):
                conf.validate_url(url)
