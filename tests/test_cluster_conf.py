"""``redis+cluster://`` and ``BACKPLANE["CLUSTER"]``: parsing, masking and check E009."""

from django.core import checks
from django.test import SimpleTestCase, override_settings

from notifier.backends.redis import RedisNotifier
from notifier.checks import check_connection
from notifier.cluster import ClusterTransport, ClusterURL, parse_url
from notifier.cluster_nodes import SyncSSLNodeConnection
from notifier.conf import cluster_url, get_settings, mask_url
from notifier.exceptions import BackplaneUnavailable
from notifier.tls import TLSConfig
from notifier.transport import transport_for_url
from tests.support.redis_server import free_port
from tests.test_sentinel_conf import LOCAL_LAYER, run_checks


class ClusterUrlTests(SimpleTestCase):
    def test_the_full_form(self):
        url = "rediss+cluster://app:p%40ss@10.0.0.1:7000,node-b:7001,[::1]/0?ssl_cert_reqs=none"
        self.assertEqual(parse_url(url), ClusterURL(
            hosts=(("10.0.0.1", 7000), ("node-b", 7001), ("::1", 6379)), username="app",
            password="p@ss", tls=True, query="ssl_cert_reqs=none"))
        self.assertEqual(parse_url(url).node_url("node-b", 7001),
                         "rediss://app:p%40ss@node-b:7001/0?ssl_cert_reqs=none")

    def test_the_short_form_and_a_round_trip(self):
        self.assertEqual(parse_url("redis+cluster://h"), ClusterURL(hosts=(("h", 6379),)))
        for url in ("redis+cluster://:pw@h:1,g:2", "rediss+cluster://u:p%2Fq@h:1/0",
                    "REDIS+CLUSTER://h:1/"):
            with self.subTest(url=url):
                self.assertEqual(parse_url(parse_url(url).to_url()), parse_url(url))

    def test_every_mistake_is_named(self):
        cases = {
            "redis+cluster://": "names no cluster node",
            "redis+cluster:///0": "names no cluster node",
            "redis+cluster://h:0": "the port must be 1-65535",
            "redis+cluster://h:x": "the port must be 1-65535",
            "redis+cluster://h:1,": "no host",
            "redis+cluster://h:1/1": "only database 0, the URL names '1'",
            "redis+cluster://h:1/0/x": "only database 0",
            "redis+cluster://h:1?db=2": "only database 0, not db=2",
            "redis+cluster://h:1?socket_timeout=soon": "socket_timeout",
        }
        for url, message in cases.items():
            with self.subTest(url=url), self.assertRaisesRegex(ValueError, message):
                parse_url(url)

    def test_passwords_are_masked(self):
        url = "redis+cluster://app:hunter2@h:1,g:2"
        masked = mask_url(url)
        self.assertEqual(masked, "redis+cluster://app:***@h:1,g:2")
        self.assertEqual(repr(ClusterTransport(url)), f"<ClusterTransport {masked}>")
        self.assertNotIn("hunter", repr(RedisNotifier(url)))

    def test_the_transport_follows_the_scheme(self):
        self.assertIsInstance(transport_for_url("redis+cluster://h:1"), ClusterTransport)
        self.assertIsInstance(transport_for_url("rediss+cluster://h:1"), ClusterTransport)
        self.assertIsInstance(RedisNotifier("Redis+Cluster://h:1").transport, ClusterTransport)


class ClusterSettingsTests(SimpleTestCase):
    def test_the_url_passes_the_checks(self):
        for url in ("redis+cluster://:pw@h:1,g:2", "rediss+cluster://h:1/0"):
            with self.subTest(url=url):
                self.assertEqual(run_checks({"BACKEND": "redis", "URL": url}), [])

    def test_the_dict_is_the_same_url(self):
        # With TLS settings beside it, it stands for rediss+cluster:// (as SENTINEL does).
        value = {"BACKEND": "redis", "TLS": {"CHECK_HOSTNAME": False}, "CLUSTER": {
            "NODES": ["h:1", ("g", 2)], "USERNAME": "app", "PASSWORD": "p/w"}}
        self.assertEqual(run_checks(value), [])
        with override_settings(BACKPLANE=value):
            settings = get_settings()
            self.assertEqual(settings.url_and_source[1], "BACKPLANE['CLUSTER']")
            self.assertEqual(parse_url(settings.url), ClusterURL(
                hosts=(("h", 1), ("g", 2)), username="app", password="p/w", tls=True))
        self.assertEqual(cluster_url({"NODES": "h:1,g", "DB": 0}),
                         "redis+cluster://h:1,g:6379/0")

    def test_each_mistake_is_e009_with_a_hint_and_no_password(self):
        cases = [
            ({"URL": "redis+cluster://:hunter2@h:1/1"}, "only database 0"),
            ({"URL": "rediss+cluster://:hunter2@h:port"}, "the port must be 1-65535"),
            ({"CLUSTER": ["h:1"]}, "must be a dict"),
            ({"CLUSTER": {"NODES": [], "PASSWORD": "hunter2"}}, "NODES must be a non-empty"),
            ({"CLUSTER": {"NODES": ["h:port"]}}, "the port must be 1-65535"),
            ({"CLUSTER": {"NODES": ["h:1"], "DB": 3}}, "DB must be 0"),
            ({"CLUSTER": {"NODES": ["h:1"], "TLS": True}}, "unknown key(s) 'TLS'"),
            ({"CLUSTER": {"NODES": ["h:1"], "PASSWORD": 5}}, "PASSWORD must be a string"),
            ({"CLUSTER": {"NODES": ["h:1"], "PASWORD": "hunter2"}}, "unknown key"),
            ({"CLUSTER": {"NODES": ["h:1"]}, "URL": "redis://h:1/0"}, "both URL and CLUSTER"),
            ({"CLUSTER": {"NODES": ["h:1"]}, "SENTINEL": {"HOSTS": ["s:1"], "SERVICE": "m"}},
             "both SENTINEL and CLUSTER"),
        ]
        for extra, reason in cases:
            with self.subTest(extra=extra):
                messages = run_checks({"BACKEND": "redis", **extra})
                self.assertEqual([m.id for m in messages], ["notifier.E009"])
                self.assertIsInstance(messages[0], checks.Error)
                self.assertIn(reason, messages[0].msg)
                self.assertTrue(messages[0].hint)
                self.assertNotIn("hunter2", messages[0].msg + messages[0].hint)

    def test_tls_settings_need_a_tls_url(self):
        value = {"BACKEND": "redis", "URL": "redis+cluster://h:1", "TLS": {}}
        self.assertEqual([m.id for m in run_checks(value)], ["notifier.E052"])
        value["URL"] = "rediss+cluster://h:1"
        self.assertEqual(run_checks(value), [])
        transport = ClusterTransport("rediss+cluster://h:1", tls=TLSConfig(ca_certs="/ca.pem"))
        client = transport.client(asynchronous=False)
        try:
            kwargs = client.connection_pool.connection_kwargs
            self.assertEqual(kwargs["ssl_ca_certs"], "/ca.pem")
            self.assertIs(client.connection_pool.connection_class, SyncSSLNodeConnection)
        finally:
            client.close()

    def test_strict_startup_names_the_nodes_masked(self):
        url = f"redis+cluster://:hunter2@127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        with self.assertRaises(BackplaneUnavailable) as caught:
            RedisNotifier(url).verify(1.0)
        self.assertIn("no node of the cluster answers", str(caught.exception))
        self.assertNotIn("hunter", str(caught.exception))
        with override_settings(BACKPLANE={"BACKEND": "redis", "URL": url},
                               CHANNEL_LAYERS=LOCAL_LAYER):
            [error] = check_connection()
        self.assertEqual(error.id, "notifier.E010")
        self.assertNotIn("hunter", error.msg)
