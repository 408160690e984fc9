"""/healthz, /readyz and /metrics at the ASGI level; who may read the metrics
(WEBCHAT_METRICS and its system checks); HTTP request metrics by route name."""

import json
from unittest import mock

from channels.testing import ApplicationCommunicator
from django.core.checks import run_checks
from django.db.utils import OperationalError
from django.test import SimpleTestCase, TestCase, override_settings
from prometheus_client.parser import text_string_to_metric_families

from notifier import oplog
from notifier.asgi import BackplaneMiddleware
from notifier.runtime import get_runtime
from tests.support.redis_server import (
    SHARED_URL,
    closed_port_url,
    requires_shared_redis,
    unique_channel,
)
from webchat.checks import check_settings
from webchat.http_metrics import REQUESTS
from webchat.metrics import REGISTRY
from webchat.ops import OpsEndpoints

TIMEOUT = 10  # generous: the machine is shared


async def inner_app(scope, receive, send):
    """Stands for the router behind OpsEndpoints: answers 299 so the tests see it ran."""
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"inner"})


async def call(app, path, *, method="GET", headers=(), client=("127.0.0.1", 40000)):
    """One HTTP request to the ASGI ``app``; returns ``(status, headers dict, body)``."""
    scope = {"type": "http", "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "scheme": "http",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
             "client": client, "server": ("127.0.0.1", 8000)}
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(TIMEOUT)
    body = await communicator.receive_output(TIMEOUT)
    await communicator.wait(TIMEOUT)
    return start["status"], dict(start["headers"]), body["body"]


def metric_names(body):
    return {family.name for family in text_string_to_metric_families(body.decode())}


def redis_notifier(url):
    return {"WEBCHAT_NOTIFIER": {"BACKEND": "redis", "URL": url, "CHANNEL": unique_channel()}}


class HealthzTests(SimpleTestCase):
    async def test_healthz_answers_while_the_process_lives(self):
        status, headers, body = await call(OpsEndpoints(inner_app), "/healthz")
        self.assertEqual((status, body), (200, b'{"status":"ok"}'))
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(headers[b"cache-control"], b"no-store")

    async def test_other_paths_go_to_the_application(self):
        for path in ("/", "/healthz/", "/v3/directline/conversations", "/metricsx"):
            self.assertEqual(await call(OpsEndpoints(inner_app), path), (299, {}, b"inner"))

    async def test_only_get_and_head(self):
        app = OpsEndpoints(inner_app)
        status, headers, body = await call(app, "/readyz", method="POST")
        self.assertEqual((status, headers[b"allow"]), (405, b"GET, HEAD"))
        self.assertEqual(body, b'{"error":"POST not allowed"}')
        status, headers, body = await call(app, "/healthz", method="HEAD")
        self.assertEqual((status, headers[b"content-length"], body), (200, b"15", b""))


#: The detailed /readyz answer is for callers WEBCHAT_METRICS admits: with DEBUG off, the
#: holders of its token (an operator's monitor); strangers get generic reasons.
MONITOR_TOKEN = "monitor-token-0123456789"
MONITOR = (("Authorization", f"Bearer {MONITOR_TOKEN}"),)


@override_settings(WEBCHAT_METRICS={"TOKEN": MONITOR_TOKEN})
class ReadyzTests(TestCase):
    async def test_ready_with_the_database_and_the_memory_backend(self):
        status, _, body = await call(OpsEndpoints(inner_app), "/readyz", headers=MONITOR)
        self.assertEqual(status, 200, body)
        ready = json.loads(body)
        self.assertEqual(ready["status"], "ready")
        self.assertTrue(ready["checks"]["database"]["ok"])
        self.assertEqual(ready["checks"]["backplane"]["detail"], "local delivery only")

    async def test_a_database_that_fails_makes_it_unavailable_with_the_reason(self):
        failure = OperationalError("could not connect to server\nsecond line")
        with (mock.patch("webchat.ops._ping_database", side_effect=failure),
              self.assertLogs("webchat.ops", "WARNING")):
            status, _, body = await call(OpsEndpoints(inner_app), "/readyz", headers=MONITOR)
        self.assertEqual(status, 503)
        answer = json.loads(body)
        self.assertEqual(answer["status"], "unavailable")
        self.assertEqual(answer["problems"],
                         ["database: OperationalError: could not connect to server"])
        self.assertTrue(answer["checks"]["backplane"]["ok"])


@override_settings(WEBCHAT_METRICS={"TOKEN": MONITOR_TOKEN})
class RedisReadyzTests(SimpleTestCase):
    databases = {"default"}

    async def test_degraded_while_redis_cannot_be_reached(self):
        # Every replica sees the same outage: each keeps serving its sockets, degraded.
        with override_settings(**redis_notifier(closed_port_url())), \
                mock.patch.object(oplog, "_limiter", oplog.RateLimiter()):
            app = BackplaneMiddleware(OpsEndpoints(inner_app))
            try:
                with self.assertLogs(oplog.LOGGER_NAME, "WARNING") as logs:
                    status, _, body = await call(app, "/readyz", headers=MONITOR)
                    _, _, public = await call(app, "/readyz")
                    _, _, scraped = await call(app, "/metrics", headers=MONITOR)
            finally:
                await get_runtime().aclose()
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["status"], "degraded")
        self.assertRegex(answer["degraded"][0],
                         r"^backplane: backplane listener reconnecting \(attempt [0-9]+\): ")
        self.assertEqual(answer["checks"]["backplane"]["state"], "degraded")
        self.assertTrue(any("redis_degraded" in line for line in logs.output), logs.output)
        gauges = {sample.name: sample.value
                  for family in text_string_to_metric_families(scraped.decode())
                  for sample in family.samples}
        self.assertEqual((gauges["webchat_backplane_degraded"], gauges["webchat_backplane_up"]),
                         (1, 1))
        # A stranger learns the one word, not why.
        self.assertEqual(json.loads(public)["status"], "degraded")
        self.assertNotIn(b"reconnecting", public)

    async def test_unavailable_while_the_listener_cannot_reach_redis_when_strict(self):
        settings = redis_notifier(closed_port_url())
        settings["WEBCHAT_NOTIFIER"]["READINESS"] = "strict"
        with override_settings(**settings):
            app = BackplaneMiddleware(OpsEndpoints(inner_app))
            try:
                with self.assertLogs("webchat.ops", "WARNING"):
                    status, _, body = await call(app, "/readyz", headers=MONITOR)
            finally:
                await get_runtime().aclose()
        self.assertEqual(status, 503)
        answer = json.loads(body)
        self.assertEqual(len(answer["problems"]), 1)
        self.assertRegex(answer["problems"][0],
                         r"^backplane: backplane listener reconnecting \(attempt [0-9]+\): ")
        self.assertTrue(answer["checks"]["database"]["ok"])

    @requires_shared_redis
    async def test_ready_once_the_first_probe_made_its_round_trip(self):
        with override_settings(**redis_notifier(SHARED_URL)):
            app = BackplaneMiddleware(OpsEndpoints(inner_app))
            try:
                # The first call starts the listener and waits for its first round trip.
                status, _, body = await call(app, "/readyz", headers=MONITOR)
            finally:
                await get_runtime().aclose()
        self.assertEqual(status, 200, body)
        backplane = json.loads(body)["checks"]["backplane"]
        self.assertEqual((backplane["listener"], backplane["probe"]["healthy"]),
                         ("connected", True))


class MetricsAccessTests(SimpleTestCase):
    async def scrape(self, client="127.0.0.1", headers=()):
        return await call(OpsEndpoints(inner_app), "/metrics", client=(client, 40000),
                          headers=headers)

    @override_settings(DEBUG=True, WEBCHAT_METRICS=None)
    async def test_with_debug_on_anyone_may_scrape(self):
        status, headers, body = await self.scrape("203.0.113.7")
        self.assertEqual(status, 200)
        self.assertTrue(headers[b"content-type"].startswith(b"text/plain; version=0.0.4"))
        names = metric_names(body)
        for name in ("webchat_notifier_published", "webchat_backplane_up",
                     "webchat_stream_open_sockets", "webchat_stream_frames_sent",
                     "webchat_stream_replay_activities", "process_cpu_seconds"):
            self.assertIn(name, names)

    @override_settings(DEBUG=False, WEBCHAT_METRICS={})
    async def test_with_debug_off_and_no_token_nobody_may_scrape(self):
        # Not even loopback: behind a same-host proxy every client is loopback.
        for client in ("127.0.0.1", "::1", "203.0.113.7", None):
            status, _, body = await self.scrape(client)
            self.assertEqual(status, 403, client)
            self.assertIn(b"need WEBCHAT_METRICS['TOKEN'] when DEBUG is off", body)

    @override_settings(DEBUG=True, WEBCHAT_METRICS={"ALLOWED_IPS": ["10.0.0.0/8", "::1"]})
    async def test_allowed_ips_replace_the_default(self):
        self.assertEqual((await self.scrape("10.1.2.3"))[0], 200)
        self.assertEqual((await self.scrape("::1"))[0], 200)
        self.assertEqual((await self.scrape("127.0.0.1"))[0], 403)
        self.assertEqual((await self.scrape("11.0.0.1"))[0], 403)

    @override_settings(DEBUG=False, WEBCHAT_METRICS={"TOKEN": "s3cret-metrics-token"})
    async def test_with_debug_off_the_token_is_required_from_anywhere(self):
        good = [("Authorization", "Bearer s3cret-metrics-token")]
        for client in ("203.0.113.7", "127.0.0.1"):
            self.assertEqual((await self.scrape(client, good))[0], 200, client)
        for headers in ([("Authorization", "Bearer wrong-token-wrong-token")],
                        [("Authorization", "Basic s3cret-metrics-token")], []):
            status, _, body = await self.scrape("127.0.0.1", headers)
            self.assertEqual(status, 403, headers)
            self.assertIn(b"need 'Authorization: Bearer", body)

    @override_settings(DEBUG=False,
                       WEBCHAT_METRICS={"TOKEN": "s3cret-metrics-token",
                                        "ALLOWED_IPS": ["10.0.0.0/8"]})
    async def test_with_debug_off_allowed_ips_also_limit_the_token(self):
        good = [("Authorization", "Bearer s3cret-metrics-token")]
        self.assertEqual((await self.scrape("10.1.2.3", good))[0], 200)
        self.assertEqual((await self.scrape("203.0.113.7", good))[0], 403)
        self.assertEqual((await self.scrape("10.1.2.3"))[0], 403)

    @override_settings(DEBUG=True,
                       WEBCHAT_METRICS={"TOKEN": "s3cret-metrics-token", "ALLOWED_IPS": []})
    async def test_with_debug_on_a_bearer_token_opens_it_from_anywhere(self):
        good = [("Authorization", "Bearer s3cret-metrics-token")]
        self.assertEqual((await self.scrape("203.0.113.7", good))[0], 200)
        for headers in ([("Authorization", "Bearer wrong-token-wrong-token")],
                        [("Authorization", "Basic s3cret-metrics-token")], []):
            self.assertEqual((await self.scrape("127.0.0.1", headers))[0], 403, headers)

    @override_settings(WEBCHAT_METRICS={"ENABLED": False})
    async def test_disabled_is_404(self):
        status, _, body = await self.scrape()
        self.assertEqual((status, body), (404, b'{"error":"metrics are disabled"}'))


class MetricsSettingsCheckTests(SimpleTestCase):
    def ids(self, value):
        with override_settings(WEBCHAT_METRICS=value):
            return [error.id for error in check_settings() if error.obj == "WEBCHAT_METRICS"]

    def test_valid_settings_pass(self):
        for value in (None, {}, {"ENABLED": False},
                      {"ALLOWED_IPS": ["127.0.0.1", "10.0.0.0/8", "::1"],
                       "TOKEN": "a" * 16}):
            self.assertEqual(self.ids(value), [], value)

    def test_each_mistake_has_its_id(self):
        cases = [
            ("on", ["webchat.E020"]),
            ({"ENABLE": True}, ["webchat.E020"]),
            ({"ENABLED": "yes"}, ["webchat.E021"]),
            ({"ALLOWED_IPS": "127.0.0.1"}, ["webchat.E022"]),
            ({"ALLOWED_IPS": ["127.0.0.1", "localhost"]}, ["webchat.E022"]),
            ({"TOKEN": "short"}, ["webchat.E023"]),
            ({"TOKEN": 1234567890123456789}, ["webchat.E023"]),
        ]
        for value, expected in cases:
            self.assertEqual(self.ids(value), expected, value)

    def test_registered_with_the_system_checks(self):
        with override_settings(WEBCHAT_METRICS={"TOKEN": "short"}):
            self.assertIn("webchat.E023", [e.id for e in run_checks()])


class HttpMetricsTests(TestCase):
    def count(self, route, method, status):
        return REGISTRY.get_sample_value(
            "webchat_http_requests_total", {"route": route, "method": method, "status": status}
        ) or 0

    def test_requests_are_counted_by_route_name_not_path(self):
        before = self.count("directline-conversation", "GET", "401")
        for conversation in ("a", "b", "c"):
            self.client.get(f"/v3/directline/conversations/{conversation}")
        self.assertEqual(self.count("directline-conversation", "GET", "401"), before + 3)
        before = self.count("unmatched", "other", "404")
        self.client.generic("BREW", "/no-such-page")
        self.assertEqual(self.count("unmatched", "other", "404"), before + 1)
        self.assertIsNotNone(REGISTRY.get_sample_value(
            "webchat_http_request_duration_seconds_count", {"route": "directline-conversation"}
        ))
        # No series carries a path.
        labels = {sample.labels.get("route") for sample in REQUESTS.collect()[0].samples}
        self.assertFalse(any(route and route.startswith("/") for route in labels), labels)

    async def test_async_requests_are_counted_too(self):
        before = self.count("directline-generate", "POST", "401")
        await self.async_client.post("/v3/directline/tokens/generate")
        self.assertEqual(self.count("directline-generate", "POST", "401"), before + 1)
