"""TLS to Redis (``BACKPLANE["TLS"]``, ``rediss://``, ``rediss+sentinel://``): settings and
their checks (E050-E052), and real TLS ``redis-server``s with client-certificate auth: the
backplane works end to end, and each way TLS can fail is named (E012) with its hint."""

import asyncio
import logging
import os
import shutil
import tempfile
import uuid

from django.test import SimpleTestCase, override_settings

from notifier.checks import check_connection, check_settings, check_tls
from notifier.conf import get_settings
from notifier.exceptions import BackplaneTLSFailed
from notifier.tls import TLSConfig
from tests.support.backplane import TIMEOUT, assert_crosses, notifier_pair
from tests.support.redis_server import unique_channel
from tests.support.tls import (
    KEY_PASSWORD,
    TLSRedisServer,
    TLSSentinel,
    make_pki,
    requires_tls_tools,
)


def backplane(url, tls=None, **extra):
    value = {"BACKEND": "redis", "URL": url, "CHANNEL": unique_channel("test:tls"), **extra}
    if tls is not None:
        value["TLS"] = tls
    return override_settings(BACKPLANE=value, WEBCHAT_NOTIFIER=None)


def ids(messages):
    return [message.id for message in messages]


class PKITestCase(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        directory = tempfile.mkdtemp(prefix="test-pki-")
        cls.addClassCleanup(shutil.rmtree, directory, ignore_errors=True)
        cls.pki = make_pki(directory)


@requires_tls_tools
class TLSSettingsTests(PKITestCase):
    def test_the_tls_dict_becomes_redis_py_arguments_and_hides_the_passphrase(self):
        with backplane("rediss://127.0.0.1:1/0", {"CA_CERTS": "/ca.pem", "CERTFILE": "/c.pem",
                                                  "KEYFILE": "/c.key", "KEY_PASSWORD": "pp",
                                                  "CHECK_HOSTNAME": False}):
            config = get_settings().tls
        self.assertEqual(config.redis_kwargs(), {
            "ssl_cert_reqs": "required", "ssl_check_hostname": False, "ssl_ca_certs": "/ca.pem",
            "ssl_certfile": "/c.pem", "ssl_keyfile": "/c.key", "ssl_password": "pp"})
        self.assertNotIn("pp", repr(config))

    def test_malformed_tls_settings_fail_check_e050(self):
        for tls, expected in (
            ("/ca.pem", "it must be a dict, not str"),
            ({"CA": "/ca.pem"}, "unknown key(s) 'CA'"),
            ({"CA_CERTS": ""}, "CA_CERTS must be a non-empty string"),
            ({"CHECK_HOSTNAME": "no"}, "CHECK_HOSTNAME must be True or False"),
            ({"KEYFILE": "/k.pem"}, "KEYFILE is set without CERTFILE"),
        ):
            with self.subTest(tls=tls), backplane("rediss://127.0.0.1:1/0", tls):
                messages = check_settings()
                self.assertEqual(ids(messages), ["notifier.E050"])
                self.assertIn(expected, messages[0].msg)

    def test_tls_settings_with_a_plain_url_fail_check_e052(self):
        for url in ("redis://:pw@127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/m"):
            with self.subTest(url=url), backplane(url, {"CA_CERTS": self.pki.ca}):
                messages = check_settings()
                self.assertEqual(ids(messages), ["notifier.E052"])
                self.assertIn("is not TLS", messages[0].msg)
                self.assertNotIn(":pw@", messages[0].msg)

    def test_a_sentinel_dict_with_tls_stands_for_rediss_sentinel(self):
        with override_settings(WEBCHAT_NOTIFIER=None, BACKPLANE={
                "BACKEND": "redis", "TLS": {"CA_CERTS": "/ca.pem"},
                                          "SENTINEL": {"HOSTS": ["h:1"], "SERVICE": "m"}}):
            self.assertEqual(get_settings().url, "rediss+sentinel://h:1/m/0")
            self.assertEqual(get_settings().tls, TLSConfig(ca_certs="/ca.pem"))

    def test_files_that_do_not_load_fail_check_e051(self):
        not_pem = os.path.join(self.pki.directory, "server.csr.txt")
        with open(not_pem, "w") as file:
            file.write("not a certificate\n")
        good = {"CA_CERTS": self.pki.ca, "CERTFILE": self.pki.path("client.pem"),
                "KEYFILE": self.pki.path("client.key"), "KEY_PASSWORD": KEY_PASSWORD}
        for overrides, expected in (
            ({"CA_CERTS": "/nonexistent/ca.pem"}, "CA_CERTS '/nonexistent/ca.pem' does not exist"),
            ({"CA_CERTS": not_pem}, "holds no PEM certificate"),
            ({"KEY_PASSWORD": "wrong"}, "check KEY_PASSWORD"),
            ({"KEY_PASSWORD": None}, "check KEY_PASSWORD"),
            ({"KEYFILE": self.pki.path("rogue.key"), "KEY_PASSWORD": None},
             "the key belongs to the certificate"),
        ):
            with self.subTest(overrides=overrides), \
                    backplane("rediss://127.0.0.1:1/0", {**good, **overrides}):
                messages = check_tls()
                self.assertEqual(ids(messages), ["notifier.E051"])
                self.assertIn(expected, messages[0].msg)
                self.assertNotIn(KEY_PASSWORD, messages[0].msg)
        with backplane("rediss://127.0.0.1:1/0", good):
            self.assertEqual(check_tls(), [])


@requires_tls_tools
class TLSServerTests(PKITestCase):
    """One TLS-only redis-server that asks every client for a certificate."""

    def setUp(self):
        self.server = TLSRedisServer.start_for(self, self.pki, auth_clients=True)

    async def test_client_certificate_with_encrypted_key_end_to_end(self):
        with backplane(self.server.url, self.server.tls_setting()):
            settings = get_settings()
            self.assertEqual(check_tls(), [])
            self.assertEqual(await asyncio.to_thread(check_connection), [])
            receiver, publisher = notifier_pair(settings)
            await assert_crosses(self, receiver, publisher)

    def refusal(self, url, tls):
        """Strict startup's error and check message for ``url`` with ``tls``."""
        with backplane(url, tls):
            notifier, _ = notifier_pair(get_settings())
            with self.assertRaises(BackplaneTLSFailed) as caught:
                notifier.verify(TIMEOUT)
            messages = check_connection()
        self.assertEqual(ids(messages), ["notifier.E012"])
        self.assertIn("TLS handshake failed at rediss://", messages[0].msg)
        return str(caught.exception)

    def test_each_tls_failure_is_named_with_its_hint(self):
        tls = self.server.tls_setting()
        port = self.server.port
        cases = (
            ("no CA_CERTS: the system CAs do not know ours", self.server.url,
             {**tls, "CA_CERTS": None}, "CERTIFICATE_VERIFY_FAILED", "set TLS CA_CERTS"),
            ("no client certificate", self.server.url, {"CA_CERTS": self.pki.ca},
             "", "requires a client certificate"),
            ("a client certificate of another CA", self.server.url,
             {"CA_CERTS": self.pki.ca, "CERTFILE": self.pki.path("rogue.pem"),
              "KEYFILE": self.pki.path("rogue.key")}, "", "refused this client's certificate"),
            ("a host name the certificate does not hold", f"rediss://localhost:{port}/0", tls,
             "mismatch", "CHECK_HOSTNAME"),
            ("a wrong passphrase", self.server.url, {**tls, "KEY_PASSWORD": "wrong"}, "",
             "check TLS KEYFILE and KEY_PASSWORD"),
        )
        for name, url, settings, detail, hint in cases:
            with self.subTest(name):
                message = self.refusal(url, settings)
                self.assertIn(detail, message)
                self.assertIn(hint, message)
                self.assertNotIn(KEY_PASSWORD, message)
                self.assertNotIn("wrong", message.replace("wrong passphrase", ""))

    def test_the_shared_rate_limits_reuse_the_notifiers_tls_settings(self):
        from webchat import throttle
        from webchat.ratelimit import Rate

        with backplane(self.server.url, self.server.tls_setting()), \
                override_settings(WEBCHAT_LIMITS={"BACKEND": "redis"}):
            limiter = throttle._build()
            try:
                decision = limiter.shared.hit([(f"tls-test:{uuid.uuid4()}", Rate(5, 60))])
            finally:
                limiter.close()
        self.assertTrue(decision.allowed)

    def test_check_hostname_false_accepts_a_certificate_for_another_name(self):
        url = f"rediss://localhost:{self.server.port}/0"
        with backplane(url, self.server.tls_setting(CHECK_HOSTNAME=False)):
            notifier, _ = notifier_pair(get_settings())
            notifier.verify(TIMEOUT)

    async def test_the_listener_names_the_failure_logs_error_once_and_backs_off(self):
        with backplane(self.server.url, {"CA_CERTS": self.pki.ca}):
            notifier, _ = notifier_pair(get_settings())
        listener = notifier.listener()
        with self.assertLogs("notifier.listener", logging.INFO) as logs:
            listener.start()
            await asyncio.sleep(2.0)
            await listener.aclose()
        self.assertIsInstance(listener.last_error, BackplaneTLSFailed)
        self.assertEqual(listener.counters["errors"], 0)  # never the restart path
        # Backoff: 100, 250, 500, 1000 ms... so at most 5 attempts in 2 s.
        self.assertLessEqual(listener.counters["reconnect_failures"], 5)
        errors = [r for r in logs.records if r.levelno >= logging.ERROR]
        self.assertEqual(len(errors), 1, [r.getMessage() for r in logs.records])
        self.assertIn("requires a client certificate", errors[0].getMessage())
        self.assertIsNone(errors[0].exc_info)


@requires_tls_tools
class TLSSentinelTests(PKITestCase):
    """rediss+sentinel://: TLS (with client certificates) to the sentinel and the master."""

    async def test_discovery_and_master_connections_are_tls(self):
        master = await asyncio.to_thread(TLSRedisServer.start_for, self, self.pki)
        service = f"tls-{uuid.uuid4().hex[:8]}"
        sentinel = await asyncio.to_thread(TLSSentinel.start_for, self, self.pki, master,
                                           service)
        url = f"rediss+sentinel://127.0.0.1:{sentinel.port}/{service}/0"
        with backplane(url, master.tls_setting()):
            settings = get_settings()
            self.assertEqual(await asyncio.to_thread(check_connection), [])
            receiver, publisher = notifier_pair(settings)
            await assert_crosses(self, receiver, publisher)
        with backplane(url, {"CA_CERTS": self.pki.ca}):
            messages = await asyncio.to_thread(check_connection)
        self.assertEqual(ids(messages), ["notifier.E012"])
        self.assertIn("requires a client certificate", messages[0].msg)
        self.assertIn(f"at the sentinel 127.0.0.1:{sentinel.port} of rediss+sentinel://",
                      messages[0].msg)
