"""notifier.compat.redis_py: the fast paths only on the redis-py they were written for, the
public path (a Pipeline, one reply per read) everywhere else, run here against real Redis
with DEPENDENCY_FAST_PATHS = False; the floor check; a failing PUBLISH is logged, counted and
turns /readyz red."""

import asyncio
import json
import time
import unittest
from unittest import mock

from django.core.checks import run_checks
from django.test import SimpleTestCase, override_settings
from prometheus_client.parser import text_string_to_metric_families

from notifier import oplog, pipeline
from notifier.asgi import BackplaneMiddleware
from notifier.backends.redis import RedisNotifier
from notifier.compat import parse_version, redis_py
from notifier.events import NotifyEvent
from notifier.exceptions import InvalidNotifierConfiguration
from notifier.health import PUBLISH_FAILING_AFTER
from notifier.runtime import get_runtime
from tests.support.fast_paths import fast_path
from tests.support.redis_server import RedisServer, requires_redis_server, unique_channel
from tests.test_notifier_redis import TwoReplicaTests
from tests.test_ops_endpoints import MONITOR, MONITOR_TOKEN, call, inner_app
from tests.test_pipeline import ErrorTests, PublishTests
from webchat.ops import OpsEndpoints

TIMEOUT = 10  # generous: the machine is shared


class VersionTests(SimpleTestCase):
    def test_versions_parse_with_suffixes(self):
        self.assertEqual(parse_version("8.1.0"), (8, 1, 0))
        self.assertEqual(parse_version("5.0.0b1"), (5, 0, 0))
        self.assertEqual(parse_version("6.0"), (6, 0))

    @fast_path(redis_py)
    def test_a_supported_redis_py_runs_the_fast_paths_unless_switched_off(self):
        self.assertTrue(redis_py.SUPPORTED)
        self.assertTrue(redis_py.fast())
        with override_settings(DEPENDENCY_FAST_PATHS=False):
            self.assertFalse(redis_py.fast())
        self.assertTrue(redis_py.fast())

    @unittest.skipIf(redis_py.FAST_PATH_VERSIONS[0] <= redis_py.VERSION, "a newer redis-py")
    def test_an_older_redis_py_takes_the_public_path(self):
        self.assertFalse(redis_py.SUPPORTED)
        self.assertFalse(redis_py.fast())

    def test_a_redis_py_below_the_floor_is_refused_by_name(self):
        with mock.patch.multiple(redis_py, INSTALLED="4.6.0", VERSION=(4, 6, 0)), \
                override_settings(WEBCHAT_NOTIFIER={"BACKEND": "redis",
                                                    "URL": "redis://127.0.0.1:1/0"}):
            errors = [e for e in run_checks(tags=["notifier"]) if e.id == "notifier.E020"]
            self.assertEqual(len(errors), 1)
            self.assertIn("redis-py 4.6.0 is installed", errors[0].msg)
            self.assertIn(f">= {redis_py.FLOOR_TEXT}", errors[0].msg)
            # Strict startup (daphne, uvicorn) builds the notifier: refused the same way.
            with self.assertRaisesMessage(InvalidNotifierConfiguration, "redis-py 4.6.0"):
                RedisNotifier("redis://127.0.0.1:1/0")
        with mock.patch.multiple(redis_py, INSTALLED="4.6.0", VERSION=(4, 6, 0)):
            # The memory backend does not use redis-py.
            self.assertNotIn("notifier.E020", [e.id for e in run_checks(tags=["notifier"])])

    def test_the_switch_must_be_a_bool(self):
        with override_settings(DEPENDENCY_FAST_PATHS="no"):
            errors = [e for e in run_checks(tags=["notifier"]) if e.id == "notifier.E021"]
        self.assertEqual(len(errors), 1)
        self.assertIn("'no'", errors[0].msg)

    def test_head_channel_reads_back_any_channel(self):
        for channel in ("a", "test:é✓", "x" * 300, "with\r\nCRLF"):
            self.assertEqual(pipeline.head_channel(pipeline.command_head(channel)),
                             channel.encode())


class PublicPath:
    """Mixed into copies of real-Redis test classes: the same tests, fast paths off."""

    def setUp(self):
        super().setUp()
        self.assertFalse(redis_py.fast())


@override_settings(DEPENDENCY_FAST_PATHS=False)
class PublicPathPublishTests(PublicPath, PublishTests):
    pass


@override_settings(DEPENDENCY_FAST_PATHS=False)
class PublicPathErrorTests(PublicPath, ErrorTests):
    pass


@override_settings(DEPENDENCY_FAST_PATHS=False)
class PublicPathTwoReplicaTests(PublicPath, TwoReplicaTests):
    pass


def event(n):
    return NotifyEvent(tenant_id="t", conversation_id=f"c{n}", new_watermark=n)


@requires_redis_server
class FailingPublishTests(SimpleTestCase):
    """A user who may subscribe everywhere and PUBLISH only to the probe channel: the
    listener and its probe are fine, every notification's PUBLISH fails (NOPERM)."""

    databases = {"default"}

    async def test_every_publish_failing_is_logged_counted_and_turns_readyz_red(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        admin = server.client()
        channel = unique_channel()
        await asyncio.to_thread(
            admin.execute_command, "ACL", "SETUSER", "sender", "on", ">secret", "~*", "&*",
            "+@all", "-publish", f"(+publish &{channel}:probe:*)")
        url = f"redis://sender:secret@127.0.0.1:{server.port}/0"
        settings = {"WEBCHAT_NOTIFIER": {"BACKEND": "redis", "URL": url, "CHANNEL": channel},
                    # The reasons in /readyz and /metrics are for the monitor's token.
                    "WEBCHAT_METRICS": {"TOKEN": MONITOR_TOKEN}}
        with override_settings(**settings), \
                mock.patch.object(oplog, "_limiter", oplog.RateLimiter()):
            app = BackplaneMiddleware(OpsEndpoints(inner_app))
            try:
                status, _, body = await call(app, "/readyz", headers=MONITOR)
                self.assertEqual(status, 200, body)  # the probe works
                notifier = get_runtime().notifier
                with self.assertLogs(oplog.LOGGER_NAME, "WARNING") as logs:
                    await notifier.apublish(event(1))
                    await _until(lambda: notifier.stats()["mirror_failures"] >= 1)
                started = time.monotonic()
                self.assertIn("redis_publish_dropped", logs.output[0])
                # Named for what it is (notifier.failures), not as redis-py's NoPermissionError.
                self.assertIn("BackplanePermissionDenied: user 'sender' lacks permission for "
                              "PUBLISH on one of the channels", logs.output[0])
                self.assertNotIn("secret", logs.output[0])
                # Red once every PUBLISH has failed for PUBLISH_FAILING_AFTER seconds.
                while True:
                    status, _, body = await call(app, "/readyz", headers=MONITOR)
                    if status == 503 or time.monotonic() - started > TIMEOUT:
                        break
                    await asyncio.sleep(0.1)
                self.assertEqual(status, 503, body)
                self.assertGreaterEqual(time.monotonic() - started, PUBLISH_FAILING_AFTER - 0.5)
                [problem] = json.loads(body)["problems"]
                status, _, body = await call(app, "/metrics", headers=MONITOR)
                [failing] = [s.value for f in text_string_to_metric_families(body.decode())
                             for s in f.samples
                             if s.name == "webchat_notifier_publish_failing_seconds"]
                self.assertGreaterEqual(failing, PUBLISH_FAILING_AFTER)
                self.assertRegex(problem, r"^backplane: every PUBLISH has failed for [0-9.]+ s "
                                          r"\(last: BackplanePermissionDenied: user 'sender' "
                                          r"lacks permission for PUBLISH ")
                # Allowed again: the retried notification goes out, /readyz is green again.
                await asyncio.to_thread(admin.execute_command, "ACL", "SETUSER", "sender",
                                        "+publish")
                await _until(lambda: notifier.stats()["mirrored"] >= 1)
                status, _, body = await call(app, "/readyz", headers=MONITOR)
                self.assertEqual(status, 200, body)
            finally:
                await get_runtime().aclose()
                admin.close()


async def _until(predicate):
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
