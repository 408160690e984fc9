"""notifier.compat.twisted: under real daphne, the runtime's shutdown runs before the reactor
stops, with the fast path (the reactor's private loop attribute) and with the public one."""

import time

from asgiref.sync import async_to_sync
from django.test import SimpleTestCase

from tests.support.processes import PYTHON, ManagedProcess
from tests.support.redis_server import SHARED_URL, free_port, requires_shared_redis, unique_channel
from tests.test_notifier_runtime import http_status, numsub, redis_env

TIMEOUT = 60  # generous: daphne starts on a shared machine


@requires_shared_redis
class DaphneShutdownTests(SimpleTestCase):
    def run_daphne_and_stop_it(self, fast_paths):
        channel = unique_channel()
        port = free_port()
        env = redis_env(SHARED_URL, channel)
        env["DEPENDENCY_FAST_PATHS"] = fast_paths
        process = ManagedProcess.start_for(
            self, [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                   "webchat.asgi:application"], env=env)
        deadline = time.monotonic() + TIMEOUT
        while http_status(port) is None or async_to_sync(numsub)(channel) != 1:
            self.assertIsNone(process.process.poll(), process.output())
            self.assertLess(time.monotonic(), deadline, process.output())
            time.sleep(0.1)
        self.assertEqual(process.terminate(), 0, process.output())
        # The runtime found daphne's reactor and hooked its shutdown to it; the reactor
        # waited for the runtime's aclose(): the listener said goodbye.
        self.assertIn("backplane runtime: stops before Twisted's reactor shuts down",
                      process.output())
        self.assertIn("backplane listener stopped", process.output())
        self.assertEqual(async_to_sync(numsub)(channel), 0)

    def test_fast_path(self):
        self.run_daphne_and_stop_it("1")

    def test_public_path(self):
        self.run_daphne_and_stop_it("0")
