"""Each process its own instance id: pre-fork servers (gunicorn --preload with uvicorn
workers, uvicorn --workers) give each worker its own runtime and id; a duplicate id on the
channel (a copied INSTANCE_ID) turns readiness red with a reason that says so. Real servers,
real Redis."""

import asyncio
import json
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import redis
from django.test import SimpleTestCase

from notifier.backends.redis import RedisNotifier
from notifier.health import backplane_status
from notifier.runtime import Runtime
from tests.support.processes import PYTHON, ManagedProcess, child_env
from tests.support.redis_server import (
    SHARED_URL,
    free_port,
    requires_shared_redis,
    unique_channel,
)

TIMEOUT = 60  # generous: servers start on a shared machine


def readyz(port):
    """``(status, JSON answer)`` of GET /readyz, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())
    except OSError:
        return None


def probe_channels(channel):
    """The probe channels subscribed on ``channel``: one per listening instance id."""
    client = redis.Redis.from_url(SHARED_URL)
    try:
        return sorted(client.pubsub_channels(f"{channel}:probe:*"))
    finally:
        client.close()


def server_env(test_case, channel, **extra):
    directory = tempfile.TemporaryDirectory(prefix="fork-safety-")
    test_case.addCleanup(directory.cleanup)
    database = f"sqlite:///{directory.name}/db.sqlite3"
    return child_env(WEBCHAT_NOTIFIER_BACKEND="redis", REDIS_URL=SHARED_URL,
                     WEBCHAT_NOTIFIER_CHANNEL=channel, DATABASE_URL=database, **extra)


def gunicorn_preload(port):
    return [PYTHON, "-m", "gunicorn", "--preload", "-k", "uvicorn.workers.UvicornWorker",
            "-w", "2", "-b", f"127.0.0.1:{port}", "webchat.asgi:application"]


def uvicorn_workers(port):
    return [PYTHON, "-m", "uvicorn", "--workers", "2", "--host", "127.0.0.1", "--port",
            str(port), "webchat.asgi:application"]


@requires_shared_redis
class PreForkServerTests(SimpleTestCase):
    def start(self, args, env):
        process = ManagedProcess.start_for(self, args, env=env)
        self.addCleanup(process.terminate)
        return process

    def wait_for(self, process, predicate, what):
        deadline = time.monotonic() + TIMEOUT
        while True:
            value = predicate()
            if value:
                return value
            self.assertIsNone(process.process.poll(), process.output())
            self.assertLess(time.monotonic(), deadline, f"{what}\n{process.output()}")
            time.sleep(0.1)

    def assert_one_id_per_worker(self, args_for):
        channel = unique_channel()
        port = free_port()
        process = self.start(args_for(port), server_env(self, channel))
        # Each worker's listener subscribes to a probe channel named after its instance id.
        channels = self.wait_for(process, lambda: len(probe_channels(channel)) == 2
                                 and probe_channels(channel), "two workers listening")
        self.assertEqual(len(set(channels)), 2, channels)
        # No worker sees a twin: every /readyz answer is green.
        for _ in range(6):
            status, answer = self.wait_for(process, lambda: readyz(port), "an answer")
            self.assertEqual(status, 200, answer)
        self.assertEqual(len(probe_channels(channel)), 2)

    def test_gunicorn_preload_with_uvicorn_workers_gives_each_worker_its_own_id(self):
        self.assert_one_id_per_worker(gunicorn_preload)

    def test_uvicorn_workers_each_have_their_own_id(self):
        self.assert_one_id_per_worker(uvicorn_workers)

    def test_a_copied_instance_id_turns_readyz_red_saying_so(self):
        channel = unique_channel()
        port = free_port()
        copied = str(uuid.uuid4())
        process = self.start(gunicorn_preload(port),
                             server_env(self, channel, WEBCHAT_NOTIFIER_INSTANCE_ID=copied))

        def red():
            answer = readyz(port)
            return answer if answer and answer[0] == 503 else None

        status, answer = self.wait_for(process, red, "a red /readyz")
        self.assertEqual(probe_channels(channel), [f"{channel}:probe:{copied}".encode()])
        [problem] = answer["problems"]
        self.assertIn(f"another process uses this process's instance id {copied}", problem)
        self.assertIn("INSTANCE_ID", problem)


@requires_shared_redis
class DuplicateInstanceTests(SimpleTestCase):
    async def test_twins_are_red_while_both_listen_and_green_once_one_left(self):
        channel = unique_channel()
        twin_id = uuid.uuid4()
        first, second = (Runtime(RedisNotifier(SHARED_URL, channel=channel, instance_id=twin_id))
                         for _ in range(2))
        await first.astart()
        await second.astart()
        try:
            deadline = time.monotonic() + 10
            while not (first.listener.probe.duplicate() and second.listener.probe.duplicate()):
                self.assertLess(time.monotonic(), deadline)
                await asyncio.sleep(0.05)
            for runtime in (first, second):
                status = backplane_status(runtime)
                self.assertFalse(status["ok"])
                self.assertIn(f"another process uses this process's instance id {twin_id}",
                              status["reason"])
                self.assertTrue(status["probe"]["duplicate_instance"])
            await second.aclose()
            # Green again once the twin's probes stopped for `stale` seconds.
            deadline = time.monotonic() + 10
            while not backplane_status(first)["ok"]:
                self.assertLess(time.monotonic(), deadline, backplane_status(first))
                await asyncio.sleep(0.1)
        finally:
            await first.aclose()
            await second.aclose()
