"""Bounded work per request, attacked: huge transcripts, huge activities, huge replays.

Each case pushes past a limit of ``webchat.pages`` (MAX_POLL_ACTIVITIES, MAX_POLL_BYTES,
MAX_FRAME_BYTES, MAX_REPLAY): a poll page stays bounded and paging by watermark still reaches
every activity; the stream splits pages into frames under the frame limit and sends an
activity too big for a frame alone as a stub; through a real daphne replica and a real
WebSocket client, a 744 KB activity and its echo reach a stream opened from the start.
"""

import asyncio
import json
import logging
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import websockets
from asgiref.sync import sync_to_async
from django.test import TestCase, override_settings

from tests.support.replicas import redis_unavailable, start_cluster
from tests.support.streams import (
    TIMEOUT,
    communicator,
    make_conversation,
    receive_set,
    stream_path,
    token_for,
)
from webchat.conf import settings
from webchat.models import Activity, Conversation
from webchat.pages import encode
from webchat.transcript import activity_id

from .directline_support import BASE, DirectLineMixin, bearer

KIB, MIB = 1024, 1024 * 1024
logger = logging.getLogger(__name__)


def big_activities(conversation, count, size, *, measured=True):
    """Store ``count`` message activities of about ``size`` bytes of JSON each, with their
    size as ``append_activity`` writes it (``measured``), or none, as rows from before the
    size column."""
    start = conversation.watermark
    filler = "x" * (size - 200)
    rows = []
    for sequence in range(start + 1, start + count + 1):
        data = {"type": "message", "id": activity_id(conversation.id, sequence),
                "from": {"id": "u1", "role": "user"}, "text": filler, "n": sequence}
        size = len(encode(data)) if measured else None
        rows.append(Activity(conversation=conversation, sequence=sequence, data=data, size=size))
    Activity.objects.bulk_create(rows)
    conversation.watermark = start + count
    Conversation.objects.filter(pk=conversation.pk).update(watermark=conversation.watermark)


class PollPageTests(DirectLineMixin, TestCase):
    """The issue's case: 1,000 activities of 255 KiB made one poll answer 249 MB."""

    def page_through(self, path, credential):
        """Poll from the start until the watermark stops moving; return (ids, largest)."""
        seen, largest, watermark = [], 0, ""
        for _ in range(2000):
            response = self.get(f"{path}?watermark={watermark}", credential)
            self.assertEqual(response.status_code, 200, response.content[:300])
            largest = max(largest, len(response.content))
            body = json.loads(response.content)
            if not body["activities"]:
                break
            seen += [activity["n"] for activity in body["activities"]]
            self.assertEqual(int(body["watermark"]), seen[-1])
            watermark = body["watermark"]
        return seen, largest

    def test_1000_activities_of_255_kib_page_under_16_mib_and_paging_reaches_all(self):
        big_activities(self.conversation, 1000, 255 * KIB)
        path = f"/conversations/{self.conversation.id}/activities"
        seen, largest = self.page_through(path, self.token)
        self.assertEqual(seen, list(range(1, 1001)))
        self.assertLess(largest, 16 * MIB)
        # The cap (4 MiB by default) holds to within one activity.
        self.assertLessEqual(largest, settings.max_poll_bytes + 256 * KIB)

    def test_the_bot_api_read_is_paged_the_same_way(self):
        big_activities(self.conversation, 40, 255 * KIB)
        path = f"/bot/conversations/{self.conversation.id}/activities"
        seen, largest = self.page_through(path, self.secret)
        self.assertEqual(seen, list(range(1, 41)))
        self.assertLessEqual(largest, settings.max_poll_bytes)

    @override_settings(WEBCHAT_DIRECTLINE={"MAX_POLL_BYTES": 1000})
    def test_an_activity_bigger_than_the_cap_comes_alone(self):
        big_activities(self.conversation, 3, 5000, measured=False)
        path = f"/conversations/{self.conversation.id}/activities"
        response = self.get(f"{path}?watermark=", self.token)
        body = json.loads(response.content)
        self.assertEqual([a["n"] for a in body["activities"]], [1])
        self.assertEqual(body["watermark"], "1")
        seen, _ = self.page_through(path, self.token)
        self.assertEqual(seen, [1, 2, 3])

    @override_settings(WEBCHAT_DIRECTLINE={"MAX_POLL_BYTES": 20 * KIB})
    def test_escaped_text_is_counted_as_sent(self):
        # 2,000 emoji are 8 KB of UTF-8 and 24 KB once JSON-escaped: the cap counts the
        # escaped bytes, which are what the client receives.
        for _ in range(4):
            self.post_json(f"/conversations/{self.conversation.id}/activities",
                           {"type": "message", "text": "\U0001f600" * 2000}, self.token)
        path = f"/conversations/{self.conversation.id}/activities?watermark="
        response = self.get(path, self.token)
        body = json.loads(response.content)
        self.assertEqual(len(body["activities"]), 1)
        self.assertLessEqual(len(response.content), 30 * KIB)


@override_settings(WEBCHAT_STREAM={"MAX_FRAME_BYTES": 64 * KIB}, WEBCHAT_BOT=None)
class StreamFrameTests(TestCase):
    def setUp(self):
        self.conversation = make_conversation()
        self.token = token_for(self.conversation)

    async def frames_until(self, comm, watermark):
        frames = []
        while not frames or frames[-1][1] < watermark:
            text = await comm.receive_from(TIMEOUT)
            self.assertLessEqual(len(text.encode()), 64 * KIB)
            frames.append((json.loads(text)["activities"], int(json.loads(text)["watermark"])))
        return frames

    async def test_a_replay_bigger_than_a_frame_is_split_under_the_limit(self):
        await sync_to_async(big_activities)(self.conversation, 10, 20 * KIB)
        comm = communicator(stream_path(self.conversation.id, self.token))
        self.assertTrue((await comm.connect())[0])
        frames = await self.frames_until(comm, 10)
        self.assertGreater(len(frames), 1)
        self.assertEqual([a["n"] for batch, _ in frames for a in batch], list(range(1, 11)))
        # Each frame's watermark is its last activity's: a reconnect resumes right after.
        self.assertTrue(all(batch[-1]["n"] == mark for batch, mark in frames))
        await comm.disconnect()

    async def test_an_activity_too_big_for_a_frame_alone_becomes_a_stub(self):
        await sync_to_async(big_activities)(self.conversation, 1, 1 * KIB)
        await sync_to_async(big_activities)(self.conversation, 1, 100 * KIB)
        await sync_to_async(big_activities)(self.conversation, 1, 1 * KIB)
        comm = communicator(stream_path(self.conversation.id, self.token))
        self.assertTrue((await comm.connect())[0])
        frames = await self.frames_until(comm, 3)
        activities = [a for batch, _ in frames for a in batch]
        self.assertEqual([a["id"] for a in activities],
                         [activity_id(self.conversation.id, n) for n in (1, 2, 3)])
        stub = activities[1]
        self.assertNotIn("n", stub)
        self.assertGreater(stub["channelData"]["oversized"]["bytes"], 100 * KIB - 300)
        self.assertEqual(stub["channelData"]["oversized"]["maxFrameBytes"], 64 * KIB)
        self.assertIn("watermark=1", stub["text"])
        self.assertEqual(stub["from"], {"id": "u1", "role": "user"})
        await comm.disconnect()

    async def test_the_stub_keeps_the_client_activity_id(self):
        await sync_to_async(self.post)({"type": "message", "text": "\U0001f600" * 8000,
                                            "channelData": {"clientActivityID": "c-1"}})
        comm = communicator(stream_path(self.conversation.id, self.token))
        self.assertTrue((await comm.connect())[0])
        [stub], _ = await receive_set(self, comm)
        self.assertEqual(stub["channelData"]["clientActivityID"], "c-1")
        self.assertEqual(stub["from"]["role"], "user")
        await comm.disconnect()

    def post(self, activity):
        response = self.client.post(
            f"{BASE}/conversations/{self.conversation.id}/activities",
            data=json.dumps(activity), content_type="application/json", **bearer(self.token),
        )
        self.assertEqual(response.status_code, 200, response.content[:300])


class DaphneBigActivityTests(TestCase):
    """The issue's case, end to end: 62k emoji (248 KiB raw, 744 KB once JSON-escaped) and
    the echo bot's reply made one 1.5 MB frame, over daphne's 1 MiB: every stream opened
    from the start closed with 4500, and clients retried forever."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = redis_unavailable()
        if reason:
            raise cls.failureException(reason)
        cls.cluster = start_cluster(cls, replicas=1)
        cls.secret = cls.cluster.create_tenant()

    def test_a_744_kb_activity_and_its_echo_reach_a_stream_opened_from_the_start(self):
        cluster = self.cluster
        status, started = cluster.http(0, "POST", "/v3/directline/tokens/generate",
                                       secret=self.secret)
        self.assertEqual(status, 200)
        conversation, token = started["conversationId"], started["token"]
        status, _ = cluster.http(0, "POST", "/v3/directline/conversations", token=token)
        self.assertEqual(status, 201)
        text = "\U0001f600" * 62000
        self.assertEqual(len(json.dumps(text)), 744002)
        # Sent as UTF-8, as a browser does: 248 KiB, under the 256 KiB activity limit.
        body = json.dumps({"type": "message", "from": {"id": "u"}, "text": text},
                          ensure_ascii=False).encode()
        self.assertLess(len(body), 256 * KIB)
        request = urllib.request.Request(
            f"{cluster.replicas[0].http_url}/v3/directline/conversations/{conversation}"
            "/activities", data=body, method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            self.assertEqual(response.status, 200)
        asyncio.run(self.read_stream(conversation, token, text))

    async def read_stream(self, conversation, token, text):
        url = (f"{self.cluster.replicas[0].ws_url}/v3/directline/conversations/{conversation}"
               f"/stream?t={token}")
        # The client accepts no frame over 1 MiB, daphne's own limit.
        async with websockets.connect(url, open_timeout=TIMEOUT, max_size=MIB) as ws:
            received = []
            async with asyncio.timeout(30):
                while len(received) < 2:
                    frame = json.loads(await ws.recv())
                    received += frame["activities"]
                    self.assertEqual(frame["watermark"], str(len(received)))
        self.assertEqual([a["from"]["role"] for a in received], ["user", "bot"])
        self.assertEqual(received[0]["text"], text)
        self.assertEqual(received[1]["text"], f"You said: {text}")


class DaphnePollMemoryTests(TestCase):
    """The issue's measurement, on a real replica: 1,000 activities of 255 KiB, then four
    polls from the start at once peaked at 4.5 GB of RSS. Now each answer is a page."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = redis_unavailable()
        if reason:
            raise cls.failureException(reason)
        cls.cluster = start_cluster(cls, replicas=1, extra_env={"WEBCHAT_BOT": ""})
        cls.secret = cls.cluster.create_tenant()

    def post(self, conversation, body):
        request = urllib.request.Request(
            f"{self.cluster.replicas[0].http_url}/v3/directline/bot/conversations/"
            f"{conversation}/activities", data=body, method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.secret}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            self.assertEqual(response.status, 200)

    def poll(self, conversation, watermark=""):
        request = urllib.request.Request(
            f"{self.cluster.replicas[0].http_url}/v3/directline/conversations/{conversation}"
            f"/activities?watermark={watermark}",
            headers={"Authorization": f"Bearer {self.secret}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def peak_rss(self):
        """The replica's peak resident memory so far (VmHWM), in bytes."""
        status = Path(f"/proc/{self.cluster.replicas[0].process.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
        return int(kib) * KIB

    def test_four_polls_at_once_of_1000_activities_of_255_kib(self):
        status, started = self.cluster.http(0, "POST", "/v3/directline/tokens/generate",
                                            secret=self.secret)
        self.assertEqual(status, 200)
        conversation = started["conversationId"]
        body = json.dumps({"type": "message", "text": "x" * (255 * KIB - 100)}).encode()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: self.post(conversation, body), range(1000)))
        before = self.peak_rss()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: self.poll(conversation), range(4)))
        grown = self.peak_rss() - before
        logger.info("measured: four polls at once grew the replica's peak RSS by %.1f MiB "
                    "(answers of %s bytes)", grown / MIB, [len(a) for a in answers])
        for answer in answers:
            self.assertLess(len(answer), 16 * MIB)
            self.assertEqual(json.loads(answer)["watermark"], str(len(json.loads(answer)
                                                                      ["activities"])))
        # Four pages of ~4 MiB, each held as rows, dicts, encodings and a body: about 90 MiB
        # here, against 4.35 GiB before pages (docs/benchmarks.md).
        self.assertLess(grown, 256 * MIB, f"peak RSS grew by {grown / MIB:.0f} MiB")
