"""Forwarded headers believed from trusted proxies only (webchat/forwarded.py), and the
``/metrics`` allowlist attacked with spoofed ``X-Forwarded-For`` at the ASGI level (issue 13).

The same attacks on real daphne replicas, directly and through nginx, are in
tests/test_front_nginx.py.
"""

import ipaddress
import json

from channels.testing import ApplicationCommunicator
from django.core.checks import run_checks
from django.test import SimpleTestCase, override_settings

from webchat.checks import check_settings
from webchat.forwarded import TrustedProxies, client_from_chain
from webchat.ops import OpsEndpoints

TIMEOUT = 10
TOKEN = "metrics-token-for-the-tests"


async def seen_scope(scope, receive, send):
    """Stands for the application: answers with what it was given as client and scheme."""
    headers = sorted(name.decode() for name, _ in scope["headers"])
    body = json.dumps({"client": scope["client"], "scheme": scope.get("scheme"),
                       "headers": headers}).encode()
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def call(app, path, *, peer="127.0.0.1", headers=()):
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": path,
             "raw_path": path.encode(), "query_string": b"", "scheme": "http",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
             "client": None if peer is None else (peer, 40000),
             "server": ("127.0.0.1", 8000)}
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(TIMEOUT)
    body = await communicator.receive_output(TIMEOUT)
    await communicator.wait(TIMEOUT)
    return start["status"], body["body"]


class ClientFromChainTests(SimpleTestCase):
    def test_the_right_most_untrusted_hop_is_the_client(self):
        trusted = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8")]
        cases = [
            # (peer, X-Forwarded-For hops, client)
            ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
            ("127.0.0.1", ["127.0.0.1", "203.0.113.9"], "203.0.113.9"),  # issue 13's attack
            ("127.0.0.1", ["198.51.100.1", "203.0.113.9", "10.1.1.1"], "203.0.113.9"),
            ("127.0.0.1", ["10.1.1.1", "127.0.0.2"], "10.1.1.1"),  # all trusted: left-most
            ("127.0.0.1", [], "127.0.0.1"),
            ("203.0.113.9", ["127.0.0.1"], "203.0.113.9"),  # an untrusted peer's header
            ("::ffff:127.0.0.1", ["::ffff:203.0.113.9"], "203.0.113.9"),
            ("127.0.0.1", ["[2001:db8::1]"], "2001:db8::1"),
            ("127.0.0.1", ["not-an-address", "127.0.0.1"], None),
        ]
        for peer, hops, client in cases:
            found = client_from_chain(peer, hops, trusted)
            self.assertEqual(None if found is None else str(found), client, (peer, hops))


class TrustedProxiesTests(SimpleTestCase):
    async def resolved(self, peer, headers):
        status, body = await call(TrustedProxies(seen_scope), "/x", peer=peer, headers=headers)
        self.assertEqual(status, 299)
        return json.loads(body)

    @override_settings(WEBCHAT_TRUSTED_PROXIES=["127.0.0.1"])
    async def test_a_trusted_proxy_sets_the_client_and_the_scheme(self):
        seen = await self.resolved("127.0.0.1", [("X-Forwarded-For", "198.51.100.7, 203.0.113.9"),
                                                 ("X-Forwarded-Proto", "https")])
        self.assertEqual(seen["client"], ["203.0.113.9", 0])
        self.assertEqual(seen["scheme"], "https")

    @override_settings(WEBCHAT_TRUSTED_PROXIES=["127.0.0.1"])
    async def test_an_untrusted_peer_loses_its_forwarded_headers(self):
        spoofed = [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-Proto", "https"),
                   ("Forwarded", "for=127.0.0.1"), ("X-Real-IP", "127.0.0.1"),
                   ("X-Forwarded-Host", "evil.example"), ("Accept", "*/*")]
        seen = await self.resolved("203.0.113.9", spoofed)
        self.assertEqual(seen["client"], ["203.0.113.9", 40000])
        self.assertEqual(seen["scheme"], "http")
        self.assertEqual(seen["headers"], ["accept"])

    @override_settings(WEBCHAT_TRUSTED_PROXIES=[])
    async def test_an_empty_list_trusts_no_one_not_even_loopback(self):
        seen = await self.resolved("127.0.0.1", [("X-Forwarded-For", "203.0.113.9"),
                                                 ("X-Forwarded-Proto", "https")])
        self.assertEqual((seen["client"], seen["scheme"]), (["127.0.0.1", 40000], "http"))

    def test_bad_entries_are_a_system_check_error(self):
        def ids():
            return [e.id for e in check_settings() if e.obj == "WEBCHAT_TRUSTED_PROXIES"]

        for value in ("127.0.0.1", ["127.0.0.1", "localhost"], [None]):
            with self.subTest(value=value), override_settings(WEBCHAT_TRUSTED_PROXIES=value):
                self.assertEqual(ids(), ["webchat.E024"])
                self.assertIn("webchat.E024", [e.id for e in run_checks()])
        with override_settings(WEBCHAT_TRUSTED_PROXIES=["127.0.0.1", "10.0.0.0/8", "::1"]):
            self.assertEqual(ids(), [])

    @override_settings(WEBCHAT_TRUSTED_PROXIES="127.0.0.1")
    async def test_a_broken_setting_trusts_no_one(self):
        seen = await self.resolved("127.0.0.1", [("X-Forwarded-For", "203.0.113.9")])
        self.assertEqual(seen["client"], ["127.0.0.1", 40000])


@override_settings(WEBCHAT_TRUSTED_PROXIES=["127.0.0.1"])
class SpoofedMetricsTests(SimpleTestCase):
    """The allowlist behind a proxy on 127.0.0.1, attacked with X-Forwarded-For."""

    async def scrape(self, peer, forwarded_for, token=False):
        headers = [("X-Forwarded-For", forwarded_for)] if forwarded_for else []
        if token:
            headers.append(("Authorization", f"Bearer {TOKEN}"))
        status, _ = await call(TrustedProxies(OpsEndpoints(seen_scope)), "/metrics",
                               peer=peer, headers=headers)
        return status

    @override_settings(DEBUG=True, WEBCHAT_METRICS={"ALLOWED_IPS": ["127.0.0.1"]})
    async def test_a_spoofed_left_most_entry_is_not_believed(self):
        # The proxy appended the real client (203.0.113.9) after the client's own claim.
        self.assertEqual(await self.scrape("127.0.0.1", "127.0.0.1, 203.0.113.9"), 403)
        self.assertEqual(await self.scrape("127.0.0.1", "203.0.113.9"), 403)
        # An untrusted peer claiming to be loopback, directly.
        self.assertEqual(await self.scrape("203.0.113.9", "127.0.0.1"), 403)
        # The proxy's own request, and a client on the allowed address behind it.
        self.assertEqual(await self.scrape("127.0.0.1", None), 200)
        self.assertEqual(await self.scrape("127.0.0.1", "127.0.0.1"), 200)

    @override_settings(DEBUG=False, WEBCHAT_METRICS={"TOKEN": TOKEN,
                                                     "ALLOWED_IPS": ["10.0.0.0/8"]})
    async def test_with_debug_off_the_token_and_the_real_address_are_needed(self):
        self.assertEqual(await self.scrape("127.0.0.1", "10.2.3.4", token=True), 200)
        self.assertEqual(await self.scrape("127.0.0.1", "10.2.3.4"), 403)
        self.assertEqual(await self.scrape("127.0.0.1", "10.2.3.4, 203.0.113.9", token=True),
                         403)
        self.assertEqual(await self.scrape("203.0.113.9", "10.2.3.4", token=True), 403)

    @override_settings(DEBUG=False, WEBCHAT_METRICS={})
    async def test_with_debug_off_a_same_host_proxy_no_longer_opens_it(self):
        for forwarded_for in (None, "127.0.0.1", "203.0.113.9"):
            self.assertEqual(await self.scrape("127.0.0.1", forwarded_for), 403, forwarded_for)
