"""``scripts/cluster --production``, as README.md and docs/deploy.md document it: nginx (TLS)
in front of two replicas with DEBUG=0, PostgreSQL and the Redis backplane; a conversation
through the front; Ctrl-C stops every process and drops the run's database."""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from django.test import SimpleTestCase
from websockets.sync.client import connect

from tests.support.replicas import (
    POSTGRES_ADMIN_URL,
    REDIS_URL,
    postgres_unavailable,
    redis_unavailable,
)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 90  # the script migrates a fresh PostgreSQL database first; the machine is shared
READY = re.compile(r"cluster: ready at (https://\S+)/ \(nginx -> 2 replicas (\S+) (\S+); "
                   r"database (\S+);")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port):
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def databases_named(name):
    with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5) as conn:
        return conn.execute("SELECT datname FROM pg_database WHERE datname = %s",
                            (name,)).fetchall()


class ProductionClusterScriptTests(SimpleTestCase):
    def setUp(self):
        for problem in (redis_unavailable(), postgres_unavailable()):
            if problem:
                raise AssertionError(f"scripts/cluster --production needs it: {problem}")
        self.port = free_port()
        directory = tempfile.TemporaryDirectory(prefix="webchat-production-script-")
        self.addCleanup(directory.cleanup)
        self.log = open(Path(directory.name) / "script.log", "w+")  # noqa: SIM115
        self.addCleanup(self.log.close)
        env = {key: value for key, value in os.environ.items()
               if key not in {"SQLITE_TEST_NAME", "DATABASE_URL", "DEBUG"}}
        env.update({"FRONT_PORT": str(self.port), "REDIS_URL": REDIS_URL,
                    "POSTGRES_URL": POSTGRES_ADMIN_URL, "LOG_LEVEL": "WARNING"})
        # Its own process group, so that cleanup reaches every child even if the script died.
        self.process = subprocess.Popen(
            [str(ROOT / "scripts" / "cluster"), "--production"], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.addCleanup(self.stop_group)

    def stop_group(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                continue

    def output(self):
        self.log.seek(0)
        return self.log.read()[-4000:]

    def wait_until_ready(self):
        deadline = time.monotonic() + TIMEOUT
        while not (found := READY.search(self.output())):
            if self.process.poll() is not None:
                self.fail(f"the script exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.fail(f"not ready within {TIMEOUT} s:\n{self.output()}")
            time.sleep(0.2)
        ca = re.search(r"the CA to trust: (\S+)", self.output()).group(1)
        secret_file = re.search(r"a tenant's secret is in (\S+);", self.output()).group(1)
        return found, ssl.create_default_context(cafile=ca), Path(secret_file).read_text().strip()

    def call(self, context, url, path, credential, body=None, method="POST"):
        request = urllib.request.Request(
            url + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {credential}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def test_a_conversation_through_the_front_and_ctrl_c_stops_everything(self):
        found, context, secret = self.wait_until_ready()
        url, database = found.group(1), found.group(4)
        replica_ports = [int(found.group(i).rsplit(":", 1)[1]) for i in (2, 3)]
        self.assertEqual(url, f"https://127.0.0.1:{self.port}")
        self.assertEqual(len(databases_named(database)), 1)

        status, generated = self.call(context, url, "/v3/directline/tokens/generate", secret)
        self.assertEqual(status, 200, generated)
        token = generated["token"]
        status, started = self.call(context, url, "/v3/directline/conversations", token, {})
        self.assertEqual(status, 201, started)
        self.assertTrue(started["streamUrl"].startswith(f"wss://127.0.0.1:{self.port}/"))
        with connect(started["streamUrl"], ssl=context, open_timeout=30) as stream:
            status, posted = self.call(
                context, url, f"/v3/directline/conversations/{started['conversationId']}"
                "/activities", token, {"type": "message", "text": "hello through nginx"})
            self.assertEqual(status, 200, posted)
            texts = []
            while "You said: hello through nginx" not in texts:
                frame = json.loads(stream.recv(30))
                texts += [activity.get("text") for activity in frame["activities"]]
        # Production settings: /metrics needs its token, the demo page is not there.
        status, body = self.call(context, url, "/metrics", "not-the-token", method="GET")
        self.assertEqual(status, 403, body)
        status, body = self.call(context, url, "/", token, method="GET")
        self.assertEqual(status, 404, body)

        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)
        for port in (self.port, *replica_ports):
            self.assertFalse(port_open(port), f"something still listens on {port}")
        self.assertEqual(databases_named(database), [], "the run's database was not dropped")
