"""The production front (issue 13): Debian's nginx (deploy/nginx.py) in front of two daphne
replicas in production settings (DEBUG=0, real keys), PostgreSQL and the Redis backplane.

Pushed past each of its limits: bodies (1 GB, streamed, refused before any replica reads
it: replica RSS unchanged), per-path body sizes, connections and requests per client
address (429); and its forwarded headers, believed by the replicas from the proxy only,
with ``/metrics`` attacked through it and around it. nginx, PostgreSQL and Redis are
requirements: a missing one fails the test saying what to install.
"""

import http.client
import json
import secrets
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

from django.test import SimpleTestCase
from websockets.sync.client import connect

from deploy.nginx import app_limits
from tests.support.bodies import stream_body
from tests.support.nginx import Front
from tests.support.replicas import Cluster, postgres_unavailable, redis_unavailable

GIB = 1024**3
TIMEOUT = 30
#: How much a replica's RSS may move while a refused body goes by (noise, not a body).
RSS_SLACK = 16 * 1024 * 1024
METRICS_TOKEN = secrets.token_urlsafe(24)
#: A second loopback address for "another client" (the proxy and the replicas use 127.0.0.1).
OTHER_CLIENT = "127.0.0.3"
PRODUCTION = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "WEBCHAT_TOKEN_SIGNING_KEY": secrets.token_urlsafe(32),
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CORS_ALLOWED_ORIGINS": "https://www.example.com",
    "WEBCHAT_METRICS_TOKEN": METRICS_TOKEN,
    # The Prometheus host of this test: the front's own address; and only the front's
    # address is a trusted proxy, so OTHER_CLIENT's forwarded headers are not believed.
    "WEBCHAT_METRICS_ALLOWED_IPS": "127.0.0.1",
    "WEBCHAT_TRUSTED_PROXIES": "127.0.0.1",
}


def rss(pid) -> int:
    """Resident set size of ``pid`` in bytes (/proc/<pid>/status, VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def request(url, context, method, path, body=None, headers=None, source=None):
    """One HTTPS request; returns ``(status, headers, decoded JSON or raw body)``."""
    parts = urlsplit(url)
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port, context=context, timeout=TIMEOUT,
        source_address=(source, 0) if source else None,
    )
    try:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = raw
        return response.status, response.headers, decoded
    finally:
        connection.close()


_cluster = []


def production_cluster() -> Cluster:
    """The module's cluster and front, started on first use and stopped by tearDownModule."""
    if not _cluster:
        for problem in (redis_unavailable(), postgres_unavailable()):
            if problem:
                raise AssertionError(f"the front tests need it: {problem}")
        cluster = Cluster(database="postgres", extra_env=PRODUCTION, with_front=True)
        _cluster.append(cluster.start(2))
    return _cluster[0]


def tearDownModule():
    while _cluster:
        _cluster.pop().stop()


class FrontCase(SimpleTestCase):
    """The module's production cluster with its front, and a tenant of the class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cluster = production_cluster()
        cls.front = cls.cluster.front
        cls.tls = cls.front.ssl_context()
        cls.secret = cls.cluster.create_tenant(f"front-{secrets.token_hex(4)}")

    def generate(self):
        status, body = self.cluster.http(0, "POST", "/v3/directline/tokens/generate",
                                         secret=self.secret)
        self.assertEqual(status, 200, body)
        return body

    def replica_rss(self) -> list[int]:
        return [rss(replica.process.pid) for replica in self.cluster.replicas]


class TopologyTests(FrontCase):
    def test_tls_with_the_local_ca_and_both_replicas_behind_one_address(self):
        status, _, body = request(self.front.url, self.tls, "GET", "/healthz")
        self.assertEqual((status, body), (200, {"status": "ok"}))
        # An unknown CA is refused: the certificate is real TLS, not a formality.
        with self.assertRaises(ssl.SSLCertVerificationError):
            request(self.front.url, ssl.create_default_context(), "GET", "/healthz")
        # The balanced address spreads requests over both replicas.
        before = [self.generate_count(index) for index in (0, 1)]
        for _ in range(6):
            status, _, body = request(self.front.url, self.tls, "POST",
                                      "/v3/directline/tokens/generate", {},
                                      {"Authorization": f"Bearer {self.secret}"})
            self.assertEqual(status, 200, body)
        after = [self.generate_count(index) for index in (0, 1)]
        self.assertEqual(sum(after) - sum(before), 6)
        self.assertTrue(all(a > b for a, b in zip(after, before, strict=True)), (before, after))

    def generate_count(self, index) -> float:
        status, _, text = request(self.cluster.url(index), self.tls, "GET", "/metrics",
                                  headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        self.assertEqual(status, 200, text)
        for line in text.decode().splitlines():
            if (line.startswith("webchat_http_requests_total{")
                    and 'route="directline-generate"' in line and 'status="200"' in line):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def test_the_stream_url_is_wss_on_the_front_and_a_socket_works_through_it(self):
        generated = self.generate()
        token = generated["token"]
        status, _, started = request(self.front.url, self.tls, "POST",
                                     "/v3/directline/conversations", {},
                                     {"Authorization": f"Bearer {token}"})
        self.assertEqual(status, 201, started)
        stream_url = started["streamUrl"]
        self.assertTrue(stream_url.startswith(f"wss://127.0.0.1:{self.front.port}/"), stream_url)
        with connect(stream_url, ssl=self.tls, open_timeout=TIMEOUT) as stream:
            status, _, posted = request(
                self.cluster.url(1), self.tls, "POST",
                f"/v3/directline/conversations/{generated['conversationId']}/activities",
                {"type": "message", "text": "through the front"},
                {"Authorization": f"Bearer {token}"})
            self.assertEqual(status, 200, posted)
            deadline = time.monotonic() + TIMEOUT
            seen = []
            while posted["id"] not in seen:
                frame = json.loads(stream.recv(max(0.1, deadline - time.monotonic())) or "{}")
                seen += [activity["id"] for activity in frame.get("activities", [])]


class BodyLimitTests(FrontCase):
    def assert_refused_at_the_front(self, path, *, chunked, headers=()):
        before = self.replica_rss()
        started = time.monotonic()
        status, body, sent = stream_body(self.front.url, path, GIB, chunked=chunked,
                                         headers=headers, context=self.tls)
        after = self.replica_rss()
        self.assertEqual(status, 413, body)
        self.assertEqual(json.loads(body)["error"]["code"], "MessageSizeTooBig")
        self.assertLess(sent, 64 * 1024 * 1024, "the front read far more than its limit")
        self.assertLess(time.monotonic() - started, TIMEOUT)
        for index, (was, now) in enumerate(zip(before, after, strict=True)):
            self.assertLess(now - was, RSS_SLACK, f"replica {index}: RSS {was} -> {now}")

    def test_a_gigabyte_to_tokens_generate_is_refused_without_moving_replica_rss(self):
        for chunked in (False, True):
            with self.subTest(chunked=chunked):
                self.assert_refused_at_the_front("/v3/directline/tokens/generate",
                                                 chunked=chunked)

    def test_a_gigabyte_to_healthz_is_refused_without_moving_replica_rss(self):
        for chunked in (False, True):
            with self.subTest(chunked=chunked):
                self.assert_refused_at_the_front("/healthz", chunked=chunked)

    def test_the_activity_limit_is_the_apps_and_uploads_get_theirs(self):
        limits = app_limits()
        generated = self.generate()
        auth = {"Authorization": f"Bearer {generated['token']}"}
        conversation = f"/v3/directline/conversations/{generated['conversationId']}"
        # Exactly the app's limit reaches a replica (which checks the activity itself).
        text = "x" * (limits["max_body_bytes"] - len('{"type":"message","text":""}'))
        exact = json.dumps({"type": "message", "text": text}, separators=(",", ":")).encode()
        self.assertEqual(len(exact), limits["max_body_bytes"])
        status, _, body = request(self.front.url, self.tls, "POST",
                                  conversation + "/activities", exact, auth)
        self.assertEqual(status, 200, body)
        status, _, body = request(self.front.url, self.tls, "POST",
                                  conversation + "/activities", exact + b" ", auth)
        self.assertEqual(status, 413, body)
        self.assertIn("larger than this path accepts", body["error"]["message"])
        # An upload several times the activity limit is the app's to judge...
        boundary = secrets.token_hex(8)
        files = [secrets.token_bytes(limits["max_body_bytes"] * 3) for _ in range(2)]
        parts = [(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                  f'filename="f{i}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
                  ).encode() + content + b"\r\n" for i, content in enumerate(files)]
        upload = b"".join(parts) + f"--{boundary}--\r\n".encode()
        status, _, body = request(
            self.front.url, self.tls, "POST", conversation + "/upload?userId=someone", upload,
            {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertEqual(status, 200, body)
        # ... and one byte over the app's whole upload limit is refused here.
        status, body, _ = stream_body(
            self.front.url, conversation + "/upload?userId=someone",
            limits["max_upload_bytes"] + 1, chunked=False,
            headers=[f"Authorization: Bearer {generated['token']}"], context=self.tls)
        self.assertEqual(status, 413, body)


class ClientLimitTests(FrontCase):
    """Per client address: a second front on the same replicas, with small limits."""

    def small_front(self, **limits) -> Front:
        addresses = [f"127.0.0.1:{replica.port}" for replica in self.cluster.replicas]
        front = Front(addresses, **limits).start()
        self.addCleanup(front.stop)
        return front

    def test_requests_over_the_rate_get_429_with_retry_after(self):
        front = self.small_front(requests_per_second=1, request_burst=3)
        context = front.ssl_context()
        statuses = []
        for _ in range(8):
            status, headers, body = request(front.url, context, "GET", "/healthz")
            statuses.append(status)
            if status == 429:
                self.assertEqual(headers["Retry-After"], "1")
                self.assertEqual(body["error"]["code"], "TooManyRequests")
        self.assertEqual(statuses[:4], [200] * 4)  # the first one and the burst
        self.assertIn(429, statuses[4:])
        # Another address is counted on its own.
        status, _, _ = request(front.url, context, "GET", "/healthz", source=OTHER_CLIENT)
        self.assertEqual(status, 200)

    def test_connections_over_the_limit_get_429(self):
        front = self.small_front(connections_per_ip=2)
        generated = self.generate()
        status, _, started = request(front.url, front.ssl_context(), "POST",
                                     "/v3/directline/conversations", {},
                                     {"Authorization": f"Bearer {generated['token']}"})
        self.assertEqual(status, 201, started)
        url = started["streamUrl"]
        context = front.ssl_context()
        with connect(url, ssl=context, open_timeout=TIMEOUT), \
                connect(url, ssl=context, open_timeout=TIMEOUT):
            status, headers, body = request(front.url, context, "GET", "/healthz")
            self.assertEqual(status, 429, body)
            self.assertEqual(headers["Retry-After"], "1")
            status, _, _ = request(front.url, context, "GET", "/healthz", source=OTHER_CLIENT)
            self.assertEqual(status, 200)
        # Both sockets closed: the address may connect again.
        deadline = time.monotonic() + TIMEOUT
        while request(front.url, context, "GET", "/healthz")[0] != 200:
            self.assertLess(time.monotonic(), deadline, "the connection slots never came back")
            time.sleep(0.1)


class ForwardedMetricsTests(FrontCase):
    """``/metrics`` with DEBUG off: the token, from the allowed address, for real."""

    def scrape(self, url, source=None, token=True, forwarded_for=None):
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"} if token else {}
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        return request(url, self.tls, "GET", "/metrics", headers=headers, source=source)[0]

    def test_through_the_front(self):
        self.assertEqual(self.scrape(self.front.url), 200)
        self.assertEqual(self.scrape(self.front.url, token=False), 403)
        # Another client claiming the allowed address: the front overwrites the header.
        self.assertEqual(self.scrape(self.front.url, OTHER_CLIENT, forwarded_for="127.0.0.1"),
                         403)
        self.assertEqual(self.scrape(self.front.url, OTHER_CLIENT), 403)

    def test_around_the_front(self):
        replica = self.cluster.replicas[0].http_url
        self.assertEqual(self.direct(replica), 200)
        self.assertEqual(self.direct(replica, token=False), 403)
        # A client that is not a trusted proxy: its X-Forwarded-For is dropped.
        self.assertEqual(self.direct(replica, OTHER_CLIENT, forwarded_for="127.0.0.1"), 403)
        # The trusted proxy's address with a forged chain: the right-most hop counts.
        self.assertEqual(self.direct(replica, forwarded_for="127.0.0.1, 203.0.113.9"), 403)

    def direct(self, url, source=None, token=True, forwarded_for=None):
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=TIMEOUT,
            source_address=(source, 0) if source else None)
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"} if token else {}
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        try:
            connection.request("GET", "/metrics", headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()
