"""End to end (issue 15): the Web Chat UI as the seed's page runs it, with only the host changed.

A page on its own origin (a customer's site, served here by ``http.server``) fetches a token
from ``/v1/messaging/webchat/<tenant>/token`` on replica 0, as the seed's page does (no
secret: the tenant is in ``WEBCHAT_SEED["PUBLIC_TOKEN_TENANTS"]``), and gives Web Chat 4.18.1
``domain`` = ``/v1/messaging/webchat/<tenant>/v3/directline`` on replica 1, both through the
production nginx front (TLS; Chromium trusts its key by hash). Headless Chromium
(tests/support/chromium.py) types into the send box and reads the rendered DOM. The same
browser then opens a stream with its token in ``Sec-WebSocket-Protocol`` rather than the URL.

Chromium, the Web Chat bundle and Redis are requirements: missing, the test fails saying what
to install (``./scripts/test`` installs them).
"""

import functools
import json
import secrets
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.contrib.staticfiles import finders
from django.test import SimpleTestCase

from tests.support.chromium import Chromium, require_chromium
from tests.support.replicas import Cluster, redis_unavailable
from webchat.views.demo import BUNDLE

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
TIMEOUT = 30
TENANT = f"seed-ui-{secrets.token_hex(3)}"
SEND_BOX = '[data-id="webchat-sendbox-input"]'
BUBBLES_JS = """(() => {
  const texts = (selector) => Array.from(document.querySelectorAll(selector))
    .map((element) => element.innerText.trim());
  return {
    user: texts('.webchat__bubble--from-user .webchat__bubble__content'),
    bot: texts('.webchat__bubble:not(.webchat__bubble--from-user) .webchat__bubble__content'),
    sendFailed: document.body.innerText.includes('Send failed'),
  };
})()"""
# What the seed's page does, in a few lines: a token from the tenant's endpoint, then Web Chat.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>seed page</title></head>
<body style="height: 100vh; margin: 0"><div id="webchat" style="height: 100%"></div>
<script src="{bundle}"></script>
<script>
  (async () => {{
    const response = await fetch({token_url}, {{ method: 'POST' }});
    const body = await response.json();
    if (!response.ok) throw new Error(JSON.stringify(body));
    window.seedToken = body;
    const directLine = window.WebChat.createDirectLine({{ token: body.token, domain: {domain} }});
    window.WebChat.renderWebChat({{ directLine }}, document.getElementById('webchat'));
  }})().catch((error) => {{ window.seedError = String(error); }});
</script></body></html>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        """Called per request: the site's access log is of no interest here."""


class SeedWebChatUITests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_chromium()
        if finders.find(BUNDLE) is None:
            raise AssertionError(
                f"webchat/static/{BUNDLE} is missing: ./scripts/test installs "
                "botframework-webchat 4.18.1's dist/webchat.js."
            )
        problem = redis_unavailable()
        if problem:
            raise AssertionError(f"the Web Chat UI test needs Redis: {problem}")
        env = {"DEBUG": "1", "WEBCHAT_PUBLIC_TOKEN_TENANTS": TENANT}
        # Through the production nginx front (TLS; tests/support/nginx.py), as pages are.
        cls.cluster = Cluster(database="sqlite", extra_env=env, with_front=True)
        cls.addClassCleanup(cls.cluster.stop)
        cls.cluster.start(2)
        cls.cluster.create_tenant(TENANT)
        cls.site = cls.serve_site()

    @classmethod
    def serve_site(cls) -> str:
        """The customer's site: one static page, on an origin of its own."""
        directory = Path(tempfile.mkdtemp(prefix="seed-site-"))
        url = cls.cluster.url
        prefix = f"/v1/messaging/webchat/{TENANT}"
        (directory / "index.html").write_text(
            PAGE.format(
                bundle=url(0) + "/demo/webchat.js",
                token_url=json.dumps(url(0) + prefix + "/token"),
                domain=json.dumps(url(1) + prefix + "/v3/directline"),
            )
        )
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()

        def stop():
            server.shutdown()
            server.server_close()
            thread.join(TIMEOUT)

        cls.addClassCleanup(stop)
        return f"http://127.0.0.1:{server.server_address[1]}/index.html"

    async def test_the_seed_page_chats_through_both_replicas(self):
        ARTIFACTS.mkdir(exist_ok=True)
        browser = await Chromium.launch(
            ARTIFACTS / "seed-webchat-ui-chromium.log",
            extra_flags=self.cluster.front.chromium_flags(),
        )
        try:
            await self.scenario(browser)
        finally:
            await browser.close()

    async def scenario(self, browser):
        page = await browser.open_page()
        await page.navigate(self.site)
        token = await page.wait_for(
            "window.seedError ? {error: window.seedError} : window.seedToken",
            TIMEOUT, "the page's token from the seed endpoint",
        )  # fmt: skip
        self.assertNotIn("error", token)
        await page.wait_for(
            f"!!document.querySelector({json.dumps(SEND_BOX)})", TIMEOUT, "Web Chat's send box"
        )
        text = f"hello from the seed page {secrets.token_hex(3)}"
        await page.focus(SEND_BOX)
        await page.type_text(text)
        await page.press_enter()
        shown = await page.wait_for(
            f"(() => {{ const t = {BUBBLES_JS}; return t.user.includes({json.dumps(text)})"
            f" && t.bot.includes({json.dumps('You said: ' + text)}) && t; }})()",
            TIMEOUT, "the message and the bot's reply",
        )  # fmt: skip
        self.assertFalse(shown["sendFailed"])
        await page.screenshot(ARTIFACTS / "seed-webchat-ui.png")

        # The token went to replica 0's token endpoint, the chat to replica 1: both served it.
        status, body = self.cluster.http(
            0, "GET",
            f"/v1/web/webchat/{TENANT}/v3/directline/conversations/"
            f"{token['conversationId']}/activities",
            token=token["token"],
        )  # fmt: skip
        self.assertEqual(status, 200, body)
        self.assertEqual([a.get("text") for a in body["activities"]], [text, f"You said: {text}"])

        # The browser's own WebSocket, its token in Sec-WebSocket-Protocol, not in the URL.
        stream = (
            f"{self.cluster.url(0).replace('https://', 'wss://', 1)}"
            f"/v1/messaging/webchat/{TENANT}/v3/directline"
            f"/conversations/{token['conversationId']}/stream?watermark="
        )
        opened = await page.evaluate(self.open_socket_js(stream, token["token"]))
        self.assertEqual(opened["protocol"], token["token"])
        frame = json.loads(opened["data"])
        self.assertEqual([a.get("text") for a in frame["activities"]],
                         [text, f"You said: {text}"])
        # A refusal reaches the browser with its close code (the protocol is echoed then too).
        refused = await page.evaluate(
            self.open_socket_js(stream.replace(token["conversationId"], "another"), token["token"])
        )
        self.assertEqual(refused, {"closed": 4403}, refused)
        self.assertEqual(page.errors(), [])

    @staticmethod
    def open_socket_js(url, token):
        return (
            "new Promise((resolve) => {"
            f" const ws = new WebSocket({json.dumps(url)}, [{json.dumps(token)}]);"
            " ws.onmessage = (m) => {"
            " resolve({protocol: ws.protocol, data: m.data}); ws.close(); };"
            " ws.onclose = (c) => resolve({closed: c.code}); })"
        )
