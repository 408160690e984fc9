"""``redis+sentinel://`` and ``BACKPLANE["SENTINEL"]``: parsing, masking and check E008."""

from django.core import checks
from django.test import SimpleTestCase, override_settings

from notifier.backends.redis import RedisNotifier
from notifier.checks import check_connection, check_settings
from notifier.conf import get_settings, mask_url, sentinel_url
from notifier.exceptions import BackplaneUnavailable
from notifier.sentinel import SentinelTransport, SentinelURL, parse_url
from notifier.transport import RedisTransport, transport_for_url
from tests.support.redis_server import free_port

LOCAL_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def run_checks(value):
    with override_settings(BACKPLANE=value, WEBCHAT_NOTIFIER=None, CHANNEL_LAYERS=LOCAL_LAYER,
                           CACHES={}):
        return check_settings()


class SentinelUrlTests(SimpleTestCase):
    def test_the_full_form(self):
        url = ("redis+sentinel://app:p%40ss@10.0.0.1:26379,sentinel-b:26380,[::1]/mymaster/3"
               "?sentinel_username=sen&sentinel_password=s3cret")
        self.assertEqual(parse_url(url), SentinelURL(
            hosts=(("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26379)),
            service="mymaster", db=3, username="app", password="p@ss",
            sentinel_username="sen", sentinel_password="s3cret"))

    def test_the_short_form_and_a_round_trip(self):
        parsed = parse_url("redis+sentinel://h:1/m")
        self.assertEqual((parsed.hosts, parsed.service, parsed.db), ((("h", 1),), "m", 0))
        for url in ("redis+sentinel://:pw@h:1,g:2/m/1", "redis+sentinel://u:p%2Fq@h:1/m%20x/0"
                    "?sentinel_password=a%26b"):
            with self.subTest(url=url):
                self.assertEqual(parse_url(parse_url(url).to_url()), parse_url(url))

    def test_every_mistake_is_named(self):
        cases = {
            "redis+sentinel://": "names no sentinel",
            "redis+sentinel:///m": "names no sentinel",
            "redis+sentinel://h:1": "names no service",
            "redis+sentinel://h:1/": "names no service",
            "redis+sentinel://h:0/m": "the port must be 1-65535",
            "redis+sentinel://h:x/m": "the port must be 1-65535",
            "redis+sentinel://:1/m": "no host",
            "redis+sentinel://h:1,/m": "no host",
            "redis+sentinel://h:1/m/a": "'a' is not a non-negative integer",
            "redis+sentinel://h:1/m/-1": "is not a non-negative integer",
            "redis+sentinel://h:1/m/0/x": "too many path segments",
            "redis+sentinel://h:1/m?password=x": "unknown query parameter 'password'",
        }
        for url, message in cases.items():
            with self.subTest(url=url), self.assertRaisesRegex(ValueError, message):
                parse_url(url)

    def test_passwords_are_masked(self):
        url = "redis+sentinel://app:hunter2@h:1,g:2/m/0?sentinel_password=hunter3"
        masked = mask_url(url)
        self.assertEqual(masked,
                         "redis+sentinel://app:***@h:1,g:2/m/0?sentinel_password=***")
        self.assertEqual(repr(SentinelTransport(url)), f"<SentinelTransport {masked}>")
        self.assertNotIn("hunter", repr(RedisNotifier(url)))

    def test_the_transport_follows_the_scheme(self):
        self.assertIsInstance(transport_for_url("redis+sentinel://h:1/m"), SentinelTransport)
        self.assertIs(type(transport_for_url("redis://h:1/0")), RedisTransport)
        self.assertIsInstance(RedisNotifier("REDIS+SENTINEL://h:1/m").transport,
                              SentinelTransport)


class SentinelSettingsTests(SimpleTestCase):
    def test_the_url_passes_the_checks(self):
        value = {"BACKEND": "redis", "URL": "redis+sentinel://:pw@h:1,g:2/mymaster/0"}
        self.assertEqual(run_checks(value), [])

    def test_the_dict_is_the_same_url(self):
        value = {"BACKEND": "redis", "SENTINEL": {
            "HOSTS": ["h:1", ("g", 2)], "SERVICE": "mymaster", "DB": 2, "PASSWORD": "p/w",
            "SENTINEL_PASSWORD": "s"}}
        self.assertEqual(run_checks(value), [])
        with override_settings(BACKPLANE=value):
            settings = get_settings()
            self.assertEqual(settings.url_and_source[1], "BACKPLANE['SENTINEL']")
            self.assertEqual(parse_url(settings.url), SentinelURL(
                hosts=(("h", 1), ("g", 2)), service="mymaster", db=2, password="p/w",
                sentinel_password="s"))
        self.assertEqual(sentinel_url({"HOSTS": "h:1,g", "SERVICE": "m"}),
                         "redis+sentinel://h:1,g:26379/m/0")

    def test_each_mistake_is_e008_with_a_hint_and_no_password(self):
        cases = [
            {"URL": "redis+sentinel://:hunter2@h:1"},
            {"URL": "redis+sentinel://:hunter2@h:1/m/db0"},
            {"SENTINEL": ["h:1"]},
            {"SENTINEL": {"HOSTS": [], "SERVICE": "m", "PASSWORD": "hunter2"}},
            {"SENTINEL": {"HOSTS": ["h:port"], "SERVICE": "m"}},
            {"SENTINEL": {"HOSTS": ["h:1"], "SERVICE": ""}},
            {"SENTINEL": {"HOSTS": ["h:1"], "SERVICE": "m", "DB": "0"}},
            {"SENTINEL": {"HOSTS": ["h:1"], "SERVICE": "m", "PASSWORD": 5}},
            {"SENTINEL": {"HOSTS": ["h:1"], "SERVICE": "m", "PASWORD": "hunter2"}},
            {"SENTINEL": {"HOSTS": ["h:1"], "SERVICE": "m"}, "URL": "redis://h:1/0"},
        ]
        for extra in cases:
            with self.subTest(extra=extra):
                messages = run_checks({"BACKEND": "redis", **extra})
                self.assertEqual([m.id for m in messages], ["notifier.E008"])
                self.assertIsInstance(messages[0], checks.Error)
                self.assertTrue(messages[0].hint)
                self.assertNotIn("hunter2", messages[0].msg + messages[0].hint)

    def test_strict_startup_names_the_sentinels_masked(self):
        url = f"redis+sentinel://:hunter2@127.0.0.1:{free_port()}/m/0?sentinel_password=hunter3"
        with self.assertRaises(BackplaneUnavailable) as caught:
            RedisNotifier(url).verify(1.0)
        self.assertIn("No master found for 'm'", str(caught.exception))
        self.assertNotIn("hunter", str(caught.exception))
        with override_settings(BACKPLANE={"BACKEND": "redis", "URL": url},
                               CHANNEL_LAYERS=LOCAL_LAYER):
            [error] = check_connection()
        self.assertEqual(error.id, "notifier.E010")
        self.assertNotIn("hunter", error.msg)
