"""``manage.py run_backplane_listener`` as a real subprocess against real Redis."""

import base64
import json
import signal
import uuid

import redis
from django.test import SimpleTestCase

from tests.support.processes import ManagedProcess, child_env, run_manage
from tests.support.redis_server import (
    SHARED_URL,
    RedisServer,
    closed_port_url,
    requires_redis_server,
    requires_shared_redis,
    unique_channel,
)
from tests.support.wire_vectors import vectors

VECTORS = vectors()
TIMEOUT = 30  # generous: a Django process starts in a second or two on a quiet machine


def redis_env(url, channel="unused-channel"):
    return child_env(WEBCHAT_NOTIFIER_BACKEND="redis", REDIS_URL=url,
                     WEBCHAT_NOTIFIER_CHANNEL=channel)


def is_message_line(line):
    return line.startswith(("delivered ", "dropped "))


def expected_line(vector):
    if vector["expect"] == "deliver":
        event = vector["event"]
        return (f"delivered tenant={json.dumps(event['tenant_id'], ensure_ascii=False)} "
                f"conversation={json.dumps(event['conversation_id'], ensure_ascii=False)} "
                f"watermark={event['new_watermark']} ")
    return f"dropped reason={vector['expect'].split(':', 1)[1]} "


@requires_shared_redis
class ListenerCommandTests(SimpleTestCase):
    def test_vectors_are_reported_delivered_or_dropped_and_sigterm_exits_0(self):
        channel = unique_channel()
        process = ManagedProcess.manage(
            self, "run_backplane_listener", "-v", "2",
            "--instance-id", VECTORS["self_instance_id"].upper(),
            env=redis_env(SHARED_URL, channel),
        )
        connected = process.wait_for_line(lambda line: line.startswith("connected:"), TIMEOUT)
        self.assertIn(repr(channel), connected)
        client = redis.Redis.from_url(SHARED_URL)
        self.addCleanup(client.close)
        for vector in VECTORS["decode"]:
            self.assertEqual(client.publish(channel, base64.b64decode(vector["payload_b64"])), 1)
        lines = [process.wait_for_line(is_message_line, TIMEOUT) for _ in VECTORS["decode"]]
        for vector, line in zip(VECTORS["decode"], lines, strict=True):
            with self.subTest(vector["name"]):
                self.assertTrue(line.startswith(expected_line(vector)), line)
        self.assertEqual(process.terminate(signal.SIGTERM), 0, process.output())
        self.assertNotIn("Traceback", process.output())

    def test_check_exits_0_when_it_can_subscribe(self):
        code, output, _ = run_manage("run_backplane_listener", "--check",
                                     env=redis_env(SHARED_URL))
        self.assertEqual(code, 0, output)
        self.assertIn("ok: subscribed to 'unused-channel' at redis://127.0.0.1:6379/0", output)
        # The same proof as /readyz: a probe made a round trip through Redis.
        self.assertRegex(output, r"; probe round trip [0-9]+\.[0-9] ms")


class ListenerCommandFailureTests(SimpleTestCase):
    def test_check_and_startup_fail_fast_with_the_masked_url(self):
        url = closed_port_url(password="hunter2")
        cases = [
            ("run_backplane_listener", "--check"),
            ("run_backplane_listener", "--check", "--skip-checks"),
            ("run_backplane_listener", "--skip-checks"),
            ("run_backplane_listener",),
        ]
        for args in cases:
            with self.subTest(args=args):
                code, output, seconds = run_manage(*args, env=redis_env(url))
                self.assertEqual(code, 1, output)
                self.assertIn(url.replace("hunter2", "***"), output)
                self.assertNotIn("hunter2", output)
                self.assertLess(seconds, 20)  # generous: Django start-up plus a 2 s timeout

    def test_an_invalid_url_is_refused(self):
        code, output, _ = run_manage("run_backplane_listener", "--check", "--skip-checks",
                                     env=redis_env("redis://:hunter2@127.0.0.1:x/0"))
        self.assertEqual(code, 1, output)
        self.assertIn("redis://:***@127.0.0.1:x/0", output)
        self.assertNotIn("hunter2", output)

    def test_the_memory_backend_is_refused_with_what_to_set(self):
        env = child_env(WEBCHAT_NOTIFIER_BACKEND="memory")
        code, output, _ = run_manage("run_backplane_listener", "--check", env=env)
        self.assertEqual(code, 1, output)
        self.assertIn("WEBCHAT_NOTIFIER['BACKEND'] = 'redis'", output)

    def test_a_bad_instance_id_is_a_usage_error(self):
        code, output, _ = run_manage("run_backplane_listener", "--instance-id", "replica-1",
                                     env=redis_env(closed_port_url()))
        self.assertEqual(code, 2, output)
        self.assertIn("--instance-id", output)


@requires_redis_server
class ListenerCommandReconnectTests(SimpleTestCase):
    def test_channel_option_disconnect_and_reconnect_lines_and_sigint(self):
        server = RedisServer.start_for(self)
        channel = unique_channel()
        process = ManagedProcess.manage(
            self, "run_backplane_listener", "-v", "2", "--channel", channel,
            env=redis_env(server.url, "another-channel"),
        )
        connected = process.wait_for_line(lambda line: line.startswith("connected:"), TIMEOUT)
        self.assertIn(repr(channel), connected)
        client = server.client()
        self.addCleanup(client.close)
        self.assertEqual(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"), 1)
        process.wait_for_line(lambda line: line.startswith("disconnected:"), TIMEOUT)
        process.wait_for_line(lambda line: line.startswith("reconnected after 1 attempt(s):"),
                              TIMEOUT)
        payload = json.dumps({"tenant_id": "t", "conversation_id": "c", "new_watermark": 9,
                              "version": 1, "instance_id": str(uuid.uuid4())})
        self.assertEqual(client.publish(channel, payload), 1)
        line = process.wait_for_line(is_message_line, TIMEOUT)
        self.assertTrue(line.startswith('delivered tenant="t" conversation="c" watermark=9'))
        self.assertEqual(process.terminate(signal.SIGINT), 0, process.output())
