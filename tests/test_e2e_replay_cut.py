"""End to end: a replay longer than MAX_REPLAY, read by the real botframework-directlinejs.

The stream used to refuse such a socket with 4413 and the frame ``{"error": ...}``: the
client reconnected from the same watermark, 3-15 s later, forever (and that frame, not an
ActivitySet, can end its stream). Now each connection replays MAX_REPLAY activities and
closes with 4413, so each reconnect moves on: the client gets every activity, once, in order.
One daphne replica with ``WEBCHAT_STREAM_MAX_REPLAY=5``, the real client in WebSocket mode.
"""

import secrets
import time
from pathlib import Path

from django.test import SimpleTestCase

from tests.support.directlinejs import DirectLineJS, require_node
from tests.support.replicas import Cluster, redis_unavailable

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "e2e-replay-cut"
MAX_REPLAY = 5
BACKLOG = 12  # three connections: 5, 5, then 2 and live
# Each reconnect waits 3-15 s; two of them, and generous slack for a shared machine.
TIMEOUT = 2 * 15 + 30


class ReplayCutTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_node()
        problem = redis_unavailable()
        if problem:
            raise AssertionError(f"the end-to-end tests need Redis: {problem}")
        env = {"WEBCHAT_TOKEN_SIGNING_KEY": secrets.token_urlsafe(32), "DEBUG": "1",
               "WEBCHAT_STREAM_MAX_REPLAY": str(MAX_REPLAY), "WEBCHAT_BOT": ""}
        cls.cluster = Cluster(database="sqlite", extra_env=env).start(1)
        cls.addClassCleanup(cls.cluster.stop)
        cls.secret = cls.cluster.create_tenant(f"cut-{secrets.token_hex(4)}")

    def setUp(self):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.node = DirectLineJS(log_path=ARTIFACTS / f"{self.id().rsplit('.', 1)[-1]}.log")
        self.addCleanup(self.node.close)

    def test_a_long_backlog_arrives_whole_over_several_connections(self):
        status, generated = self.cluster.http(0, "POST", "/v3/directline/tokens/generate", {},
                                              secret=self.secret)
        self.assertEqual(status, 200, generated)
        conversation = generated["conversationId"]
        for n in range(BACKLOG):
            status, _ = self.cluster.http(
                0, "POST", f"/v3/directline/bot/conversations/{conversation}/activities",
                {"type": "message", "text": f"backlog {n}"}, secret=self.secret,
            )  # fmt: skip
            self.assertEqual(status, 200)
        started = time.monotonic()
        self.node.start("a", domain=self.cluster.replicas[0].http_url + "/v3/directline",
                        token=generated["token"], webSocket=True)
        last = self.node.wait_activity("a", lambda a: a.get("text") == f"backlog {BACKLOG - 1}",
                                       TIMEOUT, "the last activity of the backlog")
        texts = [a["text"] for a in self.node.activities("a")]
        self.assertEqual(texts, [f"backlog {n}" for n in range(BACKLOG)])
        self.assertTrue(last["id"].endswith(f"|{BACKLOG:07d}"))
        # It took reconnections (3-15 s each), not a socket that kept going.
        closed = self.node.sockets("a", "close")
        self.assertGreaterEqual(len(closed), 2, self.node.of("a", "socket"))
        self.assertGreater(time.monotonic() - started, 3)
