"""Headless Debian Chromium driven over the Chrome DevTools protocol (the ``websockets`` package).

Used by tests/test_e2e_webchat_ui.py. No browser download: the test setup installs Debian's
``chromium`` with apt (scripts/_clients.sh), and a missing /usr/bin/chromium fails the test
with that message instead of skipping it.

``Chromium.launch()`` starts the browser with a fresh ``--user-data-dir`` and the flags that
keep it off the network (``../shared/directline.md``); ``open_page()`` attaches to a new tab
through one flattened DevTools session. The reader task that owns the DevTools socket is
cancelled and awaited by ``close()``.
"""

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

logger = logging.getLogger(__name__)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--window-size=1024,900",
]


class ChromiumError(Exception):
    """The browser or a DevTools command failed; the message says which."""


def require_chromium() -> str:
    """Return the browser's path, or fail naming what is missing (never a skip)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise ChromiumError(
            f"{CHROMIUM} is missing: the Web Chat UI test needs Debian's chromium. "
            "./scripts/test installs it (apt-get install -y chromium)."
        )
    return CHROMIUM


class Chromium:
    """One headless browser process and its DevTools connection."""

    def __init__(self, process, user_data_dir, log_file):
        self.process = process
        self.user_data_dir = user_data_dir
        self.log_file = log_file
        self._ws = None
        self._reader = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []

    @classmethod
    async def launch(cls, log_path: Path, timeout: float = 30.0, extra_flags=()) -> "Chromium":
        """Start the browser; return once its DevTools socket is connected. ``extra_flags``
        add to FLAGS, e.g. a TLS front's ``Front.chromium_flags()`` (tests/support/nginx.py)."""
        binary = require_chromium()
        user_data_dir = tempfile.mkdtemp(prefix="webchat-e2e-chromium-")
        log_file = open(log_path, "wb")  # noqa: SIM115 (closed in close())
        # Its temporary files go in the profile too, so close() removes everything it made.
        temp_dir = os.path.join(user_data_dir, "tmp")
        os.mkdir(temp_dir)
        process = subprocess.Popen(
            [binary, *FLAGS, *extra_flags, f"--user-data-dir={user_data_dir}",
             "--remote-debugging-port=0"]
            + ["about:blank"],
            env={**os.environ, "TMPDIR": temp_dir},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        browser = cls(process, user_data_dir, log_file)
        try:
            await browser._connect(timeout)
        except BaseException:
            await browser.close()
            raise
        return browser

    async def _connect(self, timeout):
        # Chromium writes the port it picked and the browser target's path to this file.
        port_file = Path(self.user_data_dir) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ChromiumError(
                    f"chromium exited with {self.process.returncode}; see {self.log_file.name}"
                )
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) >= 2:
                break
            if time.monotonic() > deadline:
                raise ChromiumError(f"chromium opened no DevTools port in {timeout} s")
            await asyncio.sleep(0.1)
        url = f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        self._ws = await connect(url, max_size=None, open_timeout=timeout)
        self._reader = asyncio.create_task(self._read())

    async def _read(self):
        """The reader task: answers go to their waiting command, events to ``events``."""
        async for raw in self._ws:
            message = json.loads(raw)
            future = self._pending.pop(message.get("id"), None)
            if future is not None:
                if not future.done():
                    future.set_result(message)
            else:
                self.events.append(message)

    async def send(self, method, params=None, session_id=None, timeout=30.0):
        """Send one DevTools command and return its result (raise ChromiumError on error)."""
        command_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        message = {"id": command_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        await self._ws.send(json.dumps(message))
        try:
            answer = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(command_id, None)
        if "error" in answer:
            raise ChromiumError(f"{method} failed: {answer['error']}")
        return answer.get("result", {})

    async def open_page(self) -> "Page":
        """Open a new tab and attach to it with a flattened session."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "DOM"):
            await page.send(f"{domain}.enable")
        return page

    async def close(self):
        """Close the browser (SIGTERM if it does not), stop the reader, remove its profile."""
        if self._ws is not None and self.process.poll() is None:
            with contextlib.suppress(Exception):
                await self.send("Browser.close", timeout=10)
                await asyncio.to_thread(self.process.wait, 10)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 10)
        self.log_file.close()
        shutil.rmtree(self.user_data_dir, ignore_errors=True)


class Page:
    """One tab, driven through its DevTools session."""

    def __init__(self, browser: Chromium, session_id: str):
        self.browser = browser
        self.session_id = session_id

    async def send(self, method, params=None, timeout=30.0):
        return await self.browser.send(method, params, self.session_id, timeout)

    async def navigate(self, url):
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise ChromiumError(f"navigating to {url} failed: {result['errorText']}")

    async def evaluate(self, expression):
        """Evaluate a JavaScript expression (promises awaited) and return its JSON value."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ChromiumError(f"{expression!r} threw: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression, timeout, what):
        """Poll ``expression`` until it is truthy; return its value or fail saying ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; page errors: "
                    f"{self.errors() or 'none'}"
                )
            await asyncio.sleep(0.2)

    async def focus(self, selector):
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")

    async def type_text(self, text):
        """Type into the focused element as a keyboard would (input events, not .value=)."""
        for character in text:
            await self.send("Input.dispatchKeyEvent", {"type": "char", "text": character})

    async def press_enter(self):
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        await self.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", **key})
        await self.send("Input.dispatchKeyEvent", {"type": "keyUp", **key})

    async def set_input_files(self, selector, paths):
        """Pick files in an ``<input type=file>``, as the file chooser would."""
        document = await self.send("DOM.getDocument")
        node = await self.send(
            "DOM.querySelector", {"nodeId": document["root"]["nodeId"], "selector": selector}
        )
        if not node.get("nodeId"):
            raise ChromiumError(f"no element matches {selector!r}")
        await self.send(
            "DOM.setFileInputFiles", {"nodeId": node["nodeId"], "files": [str(p) for p in paths]}
        )

    async def screenshot(self, path: Path):
        result = await self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    def errors(self):
        """Uncaught page exceptions and console errors seen so far (for failure messages)."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session_id:
                continue
            if event.get("method") == "Runtime.exceptionThrown":
                details = event["params"]["exceptionDetails"]
                found.append(details.get("exception", {}).get("description") or details["text"])
            elif (
                event.get("method") == "Runtime.consoleAPICalled"
                and event["params"]["type"] == "error"
            ):
                args = event["params"]["args"]
                found.append(" ".join(str(a.get("description") or a.get("value")) for a in args))
        return found
