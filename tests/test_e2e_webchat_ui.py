"""End to end: the real Web Chat UI (botframework-webchat 4.18.1) in headless Debian Chromium.

The demo page (webchat/views/demo.py) on two live daphne replicas (DEBUG=1, the Redis
backplane, one database; tests/support/replicas.py), each reached through the production
nginx front (TLS; tests/support/nginx.py, which Chromium trusts by its key's hash), driven
over the DevTools protocol
(tests/support/chromium.py): keys are typed into Web Chat's send box, a file is picked in its
file input, and the assertions read the rendered DOM. Screenshots are kept in artifacts/.

Chromium, nginx, the Web Chat bundle and Redis are requirements: when one is missing the test fails
saying what to install (``./scripts/test`` installs them), it never skips.
"""

import asyncio
import json
import secrets
from pathlib import Path

from django.contrib.staticfiles import finders
from django.test import SimpleTestCase

from tests.support.chromium import Chromium, require_chromium
from tests.support.replicas import Cluster, redis_unavailable
from webchat.views.demo import BUNDLE

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
TIMEOUT = 30  # seconds for anything that should take one or two

SEND_BOX = '[data-id="webchat-sendbox-input"]'
# The text of each rendered message bubble, by side, and whether Web Chat flagged a failure.
TRANSCRIPT_JS = """(() => {
  const texts = (selector) => Array.from(document.querySelectorAll(selector))
    .map((element) => element.innerText.trim());
  return {
    user: texts('.webchat__bubble--from-user .webchat__bubble__content'),
    bot: texts('.webchat__bubble:not(.webchat__bubble--from-user) .webchat__bubble__content'),
    files: Array.from(document.querySelectorAll('.webchat__fileContent'))
      .map((element) => ({
        name: (element.querySelector('.webchat__fileContent__fileName') || {}).innerText,
        href: (element.querySelector('a') || element.closest('a') || {}).href || null,
      })),
    sendFailed: document.body.innerText.includes('Send failed'),
  };
})()"""


class WebChatUITests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_chromium()
        if finders.find(BUNDLE) is None:
            raise AssertionError(
                f"webchat/static/{BUNDLE} is missing: ./scripts/test (or ./scripts/serve) "
                "installs botframework-webchat 4.18.1's dist/webchat.js."
            )
        problem = redis_unavailable()
        if problem:
            raise AssertionError(f"the Web Chat UI test needs Redis: {problem}")
        cls.cluster = Cluster(database="sqlite", extra_env={"DEBUG": "1"}, with_front=True)
        cls.addClassCleanup(cls.cluster.stop)
        cls.cluster.start(2)

    def setUp(self):
        ARTIFACTS.mkdir(exist_ok=True)

    def url(self, replica, query=""):
        return self.cluster.url(replica) + "/" + query

    async def open_demo(self, browser, replica, query=""):
        page = await browser.open_page()
        await page.navigate(self.url(replica, query))
        conversation_id = await page.wait_for(
            "(() => { const id = document.getElementById('conversation-id');"
            " return id && id.textContent !== 'starting…' && id.textContent; })()",
            TIMEOUT,
            "the demo page to get its token",
        )
        self.assertNotEqual(conversation_id, "none", page.errors())
        await page.wait_for(
            f"!!document.querySelector({json.dumps(SEND_BOX)})", TIMEOUT, "Web Chat's send box"
        )
        await page.wait_for(
            "document.body.innerText.includes('Connectivity Status: Connected')"
            " || !document.body.innerText.includes('Connectivity Status')",
            TIMEOUT,
            "Web Chat to connect",
        )
        return page, conversation_id

    async def type_and_send(self, page, text):
        await page.focus(SEND_BOX)
        await page.type_text(text)
        typed = await page.evaluate(f"document.querySelector({json.dumps(SEND_BOX)}).value")
        self.assertEqual(typed, text)
        await page.press_enter()

    async def wait_for_bubbles(self, page, user=(), bot=(), what=""):
        """Wait until every ``user`` text is a user bubble and every ``bot`` text a bot one."""
        predicate = (
            f"(() => {{ const t = {TRANSCRIPT_JS};"
            f" return {json.dumps(list(user))}.every((x) => t.user.includes(x))"
            f" && {json.dumps(list(bot))}.every((x) => t.bot.includes(x)) && t; }})()"
        )
        return await page.wait_for(predicate, TIMEOUT, what or f"bubbles {user} / {bot}")

    async def test_send_a_message_and_a_file_and_watch_it_on_the_other_replica(self):
        browser = await Chromium.launch(
            ARTIFACTS / "webchat-ui-chromium.log", extra_flags=self.cluster.front.chromium_flags()
        )
        try:
            await self.scenario(browser)
        finally:
            await browser.close()

    async def scenario(self, browser):
        first, conversation_id = await self.open_demo(browser, 0)

        # A person types a message and presses Enter.
        text = f"hello from the Web Chat UI {secrets.token_hex(3)}"
        await self.type_and_send(first, text)
        shown = await self.wait_for_bubbles(
            first, user=[text], bot=[f"You said: {text}"], what="the message and the bot's reply"
        )
        self.assertEqual(shown["user"], [text])
        self.assertEqual(shown["bot"], [f"You said: {text}"])

        # ... and attaches a file, with a caption.
        content = f"notes {secrets.token_hex(8)}\n"
        notes = ARTIFACTS / "webchat-ui-notes.txt"
        notes.write_text(content)
        await first.set_input_files('input[type="file"]', [notes])
        caption = "here is a file"
        await self.type_and_send(first, caption)
        await self.wait_for_bubbles(
            first, user=[text, caption], bot=[f"You said: {caption}"], what="the upload's reply"
        )
        await first.wait_for(
            f"{TRANSCRIPT_JS}.files.some((f) => f.name && f.name.includes('webchat-ui-notes'))",
            TIMEOUT,
            "the uploaded file in the transcript",
        )
        await asyncio.sleep(1)  # Web Chat would flag a send it could not match by now
        self.assertFalse((await first.evaluate(TRANSCRIPT_JS))["sendFailed"])
        await first.screenshot(ARTIFACTS / "webchat-ui-replica-0.png")

        # The same conversation on the other replica (what scripts/cluster's links do): the
        # transcript replays, and the page fetches the file back from the service by its
        # contentUrl (with the token in the Authorization header) into a data: URL. This
        # page never had the file, so the bytes behind its link came from the service.
        second, joined = await self.open_demo(browser, 1, f"?conversationId={conversation_id}")
        self.assertEqual(joined, conversation_id)
        await self.wait_for_bubbles(
            second,
            user=[text, caption],
            bot=[f"You said: {text}", f"You said: {caption}"],
            what="the replayed transcript on the other replica",
        )
        [attachment] = (await second.evaluate(TRANSCRIPT_JS))["files"]
        href = attachment["href"]
        self.assertTrue(href and href.startswith("data:text/plain"), href)
        fetched = await second.evaluate(
            f"fetch({json.dumps(href)}).then(async (r) => [r.status, await r.text()])"
        )
        self.assertEqual(fetched, [200, content])

        # Typed on replica 1, shown live on replica 0 through the backplane.
        across = f"typed on the other replica {secrets.token_hex(3)}"
        await self.type_and_send(second, across)
        await self.wait_for_bubbles(
            first, user=[across], bot=[f"You said: {across}"], what="the other replica's message"
        )
        await self.wait_for_bubbles(second, user=[across], bot=[f"You said: {across}"])
        await first.screenshot(ARTIFACTS / "webchat-ui-replica-0.png")
        await second.screenshot(ARTIFACTS / "webchat-ui-replica-1.png")
        self.assertEqual(first.errors(), [])
        self.assertEqual(second.errors(), [])
