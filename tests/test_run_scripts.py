"""The README's run commands, as documented.

scripts/serve: the service with the demo page (the real Web Chat UI bundle) at /.
scripts/cluster: two replicas on the Redis backplane, one database, and the demo page on
both; a message posted through one reaches a socket on the other; Ctrl-C stops them all.
"""

import asyncio
import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from django.test import SimpleTestCase
from websockets.asyncio.client import connect

from tests.support.replicas import REDIS_URL, redis_unavailable

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60  # generous: the script migrates a fresh database first


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port):
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RunScriptCase(SimpleTestCase):
    """Runs one script of scripts/ in its own process group, on a fresh database."""

    script = None
    replicas = 1

    def setUp(self):
        problem = redis_unavailable()
        if problem:
            raise AssertionError(f"scripts/{self.script} needs Redis: {problem}")
        self.directory = tempfile.TemporaryDirectory(prefix="webchat-run-script-")
        self.addCleanup(self.directory.cleanup)
        self.ports = [free_port() for _ in range(self.replicas)]
        env = {
            **os.environ,
            "PORT": str(self.ports[0]),
            "CLUSTER_PORTS": " ".join(map(str, self.ports)),
            "DATABASE_URL": f"sqlite:///{self.directory.name}/db.sqlite3",
            "MEDIA_ROOT": f"{self.directory.name}/media",
            "REDIS_URL": REDIS_URL,
            "WEBCHAT_NOTIFIER_CHANNEL": f"test:{uuid.uuid4()}",
            "DEBUG": "1",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("SQLITE_TEST_NAME", None)
        self.log = open(Path(self.directory.name) / "script.log", "w+")  # noqa: SIM115
        self.addCleanup(self.log.close)
        # Its own process group, so that cleanup reaches the replicas even if the script
        # itself died: the group is the one this test made, stopped by its id.
        self.process = subprocess.Popen(
            [str(ROOT / "scripts" / self.script)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.addCleanup(self.stop_group)

    def stop_group(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(10)
                time.sleep(0.5)  # the replicas, stopped by the script's trap
            except subprocess.TimeoutExpired:
                continue

    def output(self):
        self.log.seek(0)
        return self.log.read()[-4000:]

    def wait_until_serving(self, port):
        deadline = time.monotonic() + TIMEOUT
        while True:
            if self.process.poll() is not None:
                self.fail(
                    f"scripts/cluster exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    return response.read().decode()
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.fail(f"port {port} did not serve within {TIMEOUT} s:\n{self.output()}")
                time.sleep(0.2)

    def demo_token(self, port, conversation_id=None):
        """What the demo page does: load /, then POST /demo/token with the CSRF cookie."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(f"http://127.0.0.1:{port}/", timeout=10).read()
        csrf = next(cookie.value for cookie in jar if cookie.name == "csrftoken")
        body = json.dumps({"conversationId": conversation_id} if conversation_id else {})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/demo/token",
            data=body.encode(),
            method="POST",
            headers={"Content-Type": "application/json", "X-CSRFToken": csrf},
        )
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read())

    def directline(self, port, method, path, token, body=None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v3/directline{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


class ServeScriptTests(RunScriptCase):
    script = "serve"

    def test_the_service_shows_the_demo_page_with_the_web_chat_bundle(self):
        page = self.wait_until_serving(self.ports[0])
        self.assertIn("the real Web Chat UI 4.18.1", page)
        url = f"http://127.0.0.1:{self.ports[0]}/demo/webchat.js?v=4.18.1"
        with urllib.request.urlopen(url, timeout=10) as response:
            self.assertEqual(response.status, 200)
            self.assertGreater(int(response.headers["Content-Length"]), 3_000_000)
        started = self.demo_token(self.ports[0])
        conversation = self.directline(
            self.ports[0], "POST", "/conversations", started["token"], {}
        )
        self.assertEqual(conversation["conversationId"], started["conversationId"])


class ClusterScriptTests(RunScriptCase):
    script = "cluster"
    replicas = 2

    async def test_two_replicas_one_conversation_and_ctrl_c_stops_them(self):
        first, second = self.ports
        pages = [await asyncio.to_thread(self.wait_until_serving, port) for port in self.ports]
        # Each page links to the same conversation on the other replica, not to itself.
        self.assertIn(f'data-peer="http://127.0.0.1:{second}"', pages[0])
        self.assertNotIn(f'data-peer="http://127.0.0.1:{first}"', pages[0])
        self.assertIn(f'data-peer="http://127.0.0.1:{first}"', pages[1])

        # A person opens the demo on the first replica, another joins on the second.
        started = await asyncio.to_thread(self.demo_token, first)
        conversation_id = started["conversationId"]
        joined = await asyncio.to_thread(self.demo_token, second, conversation_id)
        self.assertEqual(joined["conversationId"], conversation_id)
        resumed = await asyncio.to_thread(
            self.directline, second, "GET", f"/conversations/{conversation_id}", joined["token"]
        )
        self.assertTrue(resumed["streamUrl"].startswith(f"ws://127.0.0.1:{second}/"))

        async with connect(resumed["streamUrl"], open_timeout=TIMEOUT) as stream:
            posted = await asyncio.to_thread(
                self.directline,
                first,
                "POST",
                f"/conversations/{conversation_id}/activities",
                started["token"],
                {"type": "message", "from": {"id": "x"}, "text": "typed on the first"},
            )
            seen = []
            while len(seen) < 2:
                frame = json.loads(await asyncio.wait_for(stream.recv(), TIMEOUT))
                seen += frame["activities"]
        self.assertEqual(seen[0]["id"], posted["id"])
        self.assertEqual(seen[1]["text"], "You said: typed on the first")

        # Ctrl-C: the script stops both replicas and exits.
        self.process.send_signal(signal.SIGINT)
        await asyncio.to_thread(self.process.wait, 30)
        for port in self.ports:
            self.assertFalse(port_open(port), f"a replica still listens on {port}")
