"""The real botframework-directlinejs client, in a Node process, driven from a test.

``DirectLineJS`` starts ``node tests/e2e/driver.js`` (see its header for the line protocol),
sends it commands and collects its events: what each client received, its connection
statuses and its sockets' opens and closes. It fails, never skips, when Node 20 or the
pinned npm packages are missing, saying how to install them (``./scripts/test`` does).
"""

import base64
import itertools
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

E2E_DIR = Path(__file__).resolve().parent.parent / "e2e"
DRIVER = E2E_DIR / "driver.js"
NODE_MAJOR_MIN = 20
PINNED = {"botframework-directlinejs": "0.15.8", "xhr2": "0.2.1", "ws": "8.23.0"}


class NodeMissing(AssertionError):
    """Node or the pinned packages are not installed: the e2e tests cannot run."""


def require_node() -> str:
    """Return the node binary, or fail naming what is missing (called before any driver)."""
    node = shutil.which("node")
    if node is None:
        raise NodeMissing(
            f"node is missing: the end-to-end tests need Node.js {NODE_MAJOR_MIN}+ "
            "(./scripts/test checks it and installs tests/e2e's packages)."
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MAJOR_MIN:
        raise NodeMissing(f"Node.js {NODE_MAJOR_MIN}+ is needed, found {version}.")
    for package, pinned in PINNED.items():
        manifest = E2E_DIR / "node_modules" / package / "package.json"
        if not manifest.exists():
            raise NodeMissing(
                f"{package}@{pinned} is not installed in tests/e2e/node_modules: run "
                "./scripts/test (or `npm ci --prefix tests/e2e`)."
            )
        found = json.loads(manifest.read_text())["version"]
        if found != pinned:
            raise NodeMissing(f"{package} is {found} in tests/e2e/node_modules, not {pinned}.")
    return node


class DirectLineJS:
    """One Node process running any number of named DirectLine clients."""

    def __init__(self, log_path: Path | None = None, env: dict | None = None):
        """``env`` adds to Node's environment, e.g. ``NODE_EXTRA_CA_CERTS`` to trust a TLS
        front's CA (tests/support/nginx.py ``Front.client_env()``)."""
        node = require_node()
        self.events: list[dict] = []
        self._changed = threading.Condition()
        self._refs = (f"r{n}" for n in itertools.count(1))
        self._stderr = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [node, str(DRIVER)],
            cwd=E2E_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "NODE_NO_WARNINGS": "1", **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, name="directlinejs-reader", daemon=True)
        self._reader.start()
        ready = self.wait_for(lambda e: e["event"] == "ready", 30, "the Node driver to start")
        logger.info("directlinejs %s on node %s", ready["directlinejs"], ready["node"])

    def _read(self):
        """The reader thread: one event per stdout line, until the process ends."""
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "garbage", "line": line.decode("utf-8", "replace")}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self.events.append({"event": "exited"})
            self._changed.notify_all()

    def send(self, command: dict):
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        self.process.stdin.flush()

    def wait_for(self, predicate, timeout: float, what: str) -> dict:
        """Return the first event (from the start) matching ``predicate``, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if event["event"] == "fatal":
                        raise AssertionError(f"the Node driver failed: {event['message']}")
                    if predicate(event):
                        return event
                if self.events and self.events[-1]["event"] == "exited":
                    raise AssertionError(f"the Node driver exited while waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._changed.wait(left)

    # Clients

    def start(self, client: str, **options):
        """Create a DirectLine with ``options`` (domain, token or secret, webSocket...) and
        subscribe to its activities, which connects it."""
        self.send({"cmd": "start", "client": client, "options": options})

    def try_post(self, client: str, activity: dict, timeout: float = 30) -> dict:
        """postActivity; return the driver's answer (``posted`` or ``post_error``)."""
        return self._ask({"cmd": "post", "client": client, "activity": activity}, timeout)

    def post(self, client: str, activity: dict, timeout: float = 30) -> str:
        """postActivity; return the id the service answered (fail on an error)."""
        answer = self.try_post(client, activity, timeout)
        if answer["event"] != "posted":
            raise AssertionError(f"postActivity failed: {answer}")
        return answer["id"]

    def upload(self, client, activity, files, timeout: float = 30) -> str:
        """postActivity with attachments: ``files`` are (name, content type, bytes)."""
        command = {
            "cmd": "upload",
            "client": client,
            "activity": activity,
            "files": [
                {"name": n, "contentType": t, "base64": base64.b64encode(b).decode()}
                for n, t, b in files
            ],
        }
        answer = self._ask(command, timeout)
        if answer["event"] != "posted":
            raise AssertionError(f"upload failed: {answer}")
        return answer["id"]

    def fetch(self, url: str, headers: dict | None = None, timeout: float = 30):
        """GET ``url`` with Node's fetch; return (status, content type, bytes)."""
        answer = self._ask({"cmd": "fetch", "url": url, "headers": headers or {}}, timeout)
        return answer["status"], answer.get("contentType"), base64.b64decode(answer["base64"])

    def _ask(self, command: dict, timeout: float) -> dict:
        ref = next(self._refs)
        self.send({**command, "ref": ref})
        return self.wait_for(lambda e: e.get("ref") == ref, timeout, f"{command['cmd']} {ref}")

    def end(self, client: str):
        self.send({"cmd": "end", "client": client})
        self.wait_for(
            lambda e: e["event"] == "ended" and e["client"] == client, 10, f"{client} to end"
        )

    # What a client saw

    def of(self, client: str, kind: str) -> list[dict]:
        with self._changed:
            return [e for e in self.events if e.get("client") == client and e["event"] == kind]

    def activities(self, client: str) -> list[dict]:
        return [e["activity"] for e in self.of(client, "activity")]

    def statuses(self, client: str) -> list[str]:
        return [e["status"] for e in self.of(client, "status")]

    def sockets(self, client: str, state: str) -> list[dict]:
        return [e for e in self.of(client, "socket") if e["state"] == state]

    def wait_activity(self, client: str, predicate, timeout: float, what: str) -> dict:
        return self.wait_for(
            lambda e: (
                e["event"] == "activity" and e["client"] == client and predicate(e["activity"])
            ),
            timeout,
            f"{client} to receive {what}",
        )["activity"]

    def wait_status(self, client: str, status: str, timeout: float) -> dict:
        return self.wait_for(
            lambda e: e["event"] == "status" and e["client"] == client and e["status"] == status,
            timeout,
            f"{client} to be {status} (statuses so far: {self.statuses(client)})",
        )

    def close(self):
        """Stop every client and the process (called from tearDown / addCleanup)."""
        if self.process.poll() is None:
            try:
                self.send({"cmd": "exit"})
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(10)
        self._reader.join(10)
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()
