"""The process runtime: get_notifier(), one listener per process started on first ASGI use,
lifespan, strict startup at import of the ASGI module (in-process and as real daphne,
``manage.py check`` subprocesses), and shutdown under daphne."""

import asyncio
import time
import urllib.error
import urllib.request

import redis.asyncio as aioredis
from asgiref.sync import async_to_sync
from channels.testing import ApplicationCommunicator, HttpCommunicator
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, override_settings

from notifier.asgi import BackplaneMiddleware, with_backplane
from notifier.backends.memory import InMemoryNotifier
from notifier.backends.redis import RedisNotifier
from notifier.exceptions import BackplaneUnavailable
from notifier.listener import CONNECTED
from notifier.runtime import get_notifier, get_runtime
from tests.support.processes import PYTHON, ManagedProcess, child_env, run_manage
from tests.support.redis_server import (
    SHARED_URL,
    closed_port_url,
    free_port,
    requires_shared_redis,
    unique_channel,
)

TIMEOUT = 5


async def ok_app(scope, receive, send):
    """A minimal inner ASGI app: 200 to any HTTP request."""
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def numsub(channel):
    client = aioredis.Redis.from_url(SHARED_URL)
    try:
        return dict(await client.pubsub_numsub(channel))[channel.encode()]
    finally:
        await client.aclose()


def redis_settings(channel, url=SHARED_URL):
    return {"BACKEND": "redis", "URL": url, "CHANNEL": channel}


class GetNotifierTests(SimpleTestCase):
    def test_default_is_the_memory_notifier_built_once(self):
        notifier = get_notifier()
        self.assertIsInstance(notifier, InMemoryNotifier)
        self.assertIs(get_notifier(), notifier)

    def test_settings_changes_rebuild_it(self):
        before = get_notifier()
        channel = unique_channel()
        with override_settings(WEBCHAT_NOTIFIER=redis_settings(channel)):
            notifier = get_notifier()
            self.assertIsInstance(notifier, RedisNotifier)
            self.assertEqual((notifier.url, notifier.channel), (SHARED_URL, channel))
        self.assertIsInstance(get_notifier(), InMemoryNotifier)
        self.assertIsNot(get_notifier(), before)

    def test_invalid_settings_raise_improperly_configured(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "kafka"}), self.assertRaisesMessage(
            ImproperlyConfigured, "Unknown notifier backend"
        ):
            get_notifier()

    def test_a_new_loop_restarts_a_runtime_whose_loop_is_gone(self):
        runtime = get_runtime()
        async_to_sync(runtime.astart)()
        first = runtime.loop
        async_to_sync(runtime.astart)()
        self.assertIsNot(runtime.loop, first)


class StrictStartupTests(SimpleTestCase):
    def test_memory_backend_wraps_without_touching_the_network(self):
        with override_settings(WEBCHAT_NOTIFIER={"BACKEND": "memory"}):
            self.assertIsInstance(with_backplane(ok_app), BackplaneMiddleware)

    def test_closed_port_fails_within_about_two_seconds_with_the_masked_url(self):
        url = closed_port_url(password="hunter2")
        with override_settings(WEBCHAT_NOTIFIER=redis_settings("c", url)):
            started = time.monotonic()
            with self.assertRaises(BackplaneUnavailable) as caught:
                with_backplane(ok_app)
            self.assertLess(time.monotonic() - started, 2.5)
        self.assertIsInstance(caught.exception, ImproperlyConfigured)
        self.assertIn(url.replace("hunter2", "***"), str(caught.exception))
        self.assertNotIn("hunter2", str(caught.exception))

    def test_an_invalid_url_fails_with_the_masked_url(self):
        bad = redis_settings("c", "redis://:hunter2@h:x/0")
        with override_settings(WEBCHAT_NOTIFIER=bad), self.assertRaises(
            ImproperlyConfigured
        ) as caught:
            with_backplane(ok_app)
        self.assertIn("redis://:***@h:x/0", str(caught.exception))
        self.assertNotIn("hunter2", str(caught.exception))


@requires_shared_redis
class FirstUseTests(SimpleTestCase):
    async def test_first_asgi_call_starts_exactly_one_listener(self):
        channel = unique_channel()
        with override_settings(WEBCHAT_NOTIFIER=redis_settings(channel)):
            app = BackplaneMiddleware(ok_app)
            runtime = get_runtime()
            self.assertIsNone(runtime.listener)
            try:
                responses = await asyncio.gather(*[
                    HttpCommunicator(app, "GET", "/").get_response(timeout=TIMEOUT)
                    for _ in range(3)
                ])
                self.assertEqual([r["status"] for r in responses], [200] * 3)
                listener = runtime.listener
                await listener.wait_connected(TIMEOUT)
                await HttpCommunicator(app, "GET", "/").get_response(timeout=TIMEOUT)
                self.assertIs(runtime.listener, listener)
                self.assertIs(runtime.loop, asyncio.get_running_loop())
                self.assertIs(runtime.notifier.loop, asyncio.get_running_loop())
                self.assertEqual(await numsub(channel), 1)
            finally:
                await runtime.aclose()
            self.assertIsNone(runtime.listener)
            self.assertEqual(await numsub(channel), 0)

    async def test_lifespan_starts_and_stops_the_runtime(self):
        channel = unique_channel()
        with override_settings(WEBCHAT_NOTIFIER=redis_settings(channel)):
            app = BackplaneMiddleware(ok_app)
            communicator = ApplicationCommunicator(app, {"type": "lifespan"})
            await communicator.send_input({"type": "lifespan.startup"})
            self.assertEqual(await communicator.receive_output(TIMEOUT),
                             {"type": "lifespan.startup.complete"})
            runtime = get_runtime()
            await runtime.listener.wait_connected(TIMEOUT)
            self.assertEqual(runtime.listener.state, CONNECTED)
            await communicator.send_input({"type": "lifespan.shutdown"})
            self.assertEqual(await communicator.receive_output(TIMEOUT),
                             {"type": "lifespan.shutdown.complete"})
            await communicator.wait(TIMEOUT)
            self.assertIsNone(runtime.listener)
            self.assertEqual(await numsub(channel), 0)


def http_status(port):
    """GET a page that does not exist; the status, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code  # any HTTP answer went through the middleware
    except OSError:
        return None


def redis_env(url, channel="unused"):
    return child_env(WEBCHAT_NOTIFIER_BACKEND="redis", REDIS_URL=url,
                     WEBCHAT_NOTIFIER_CHANNEL=channel)


class SubprocessStrictStartupTests(SimpleTestCase):
    """Real processes refuse to start: ``manage.py check`` and daphne."""

    def assert_refused(self, code, output, password):
        self.assertNotEqual(code, 0, output)
        self.assertIn("***", output)
        self.assertNotIn(password, output)

    def test_manage_check_fails_on_a_closed_port_and_a_bad_url(self):
        for url in [closed_port_url(password="hunter2"), "redis://:hunter2@127.0.0.1:x/0"]:
            with self.subTest(url=url):
                code, output, _ = run_manage("check", env=redis_env(url))
                self.assert_refused(code, output, "hunter2")
                self.assertIn(url.replace("hunter2", "***"), output)

    def test_daphne_exits_non_zero_on_a_closed_port_and_a_bad_url(self):
        for url in [closed_port_url(password="hunter2"), "redis://:hunter2@127.0.0.1:x/0"]:
            with self.subTest(url=url):
                process = ManagedProcess.start_for(
                    self,
                    [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(free_port()),
                     "webchat.asgi:application"],
                    env=redis_env(url),
                )
                code = process.wait(timeout=60)
                self.assert_refused(code, process.output(), "hunter2")
                self.assertIn(url.replace("hunter2", "***"), process.output())


@requires_shared_redis
class DaphneRuntimeTests(SimpleTestCase):
    def test_one_listener_per_process_started_on_first_request_and_stopped_on_sigterm(self):
        channel = unique_channel()
        port = free_port()
        process = ManagedProcess.start_for(
            self,
            [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "webchat.asgi:application"],
            env=redis_env(SHARED_URL, channel),
        )
        deadline = time.monotonic() + 60
        while http_status(port) is None:
            self.assertIsNone(process.process.poll(), process.output())
            self.assertLess(time.monotonic(), deadline, process.output())
            time.sleep(0.1)
        process.wait_for_line(lambda line: "backplane listener starting" in line)
        deadline = time.monotonic() + TIMEOUT
        while async_to_sync(numsub)(channel) != 1:
            self.assertLess(time.monotonic(), deadline, process.output())
            time.sleep(0.05)
        for _ in range(3):
            self.assertIsNotNone(http_status(port))
        self.assertEqual(async_to_sync(numsub)(channel), 1)
        self.assertEqual(process.terminate(), 0, process.output())
        # The reactor waited for the runtime's aclose(): the listener said goodbye.
        self.assertIn("backplane listener stopped", process.output())
        self.assertEqual(async_to_sync(numsub)(channel), 0)
