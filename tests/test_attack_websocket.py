"""The Direct Line stream under attack: bad input beyond the WebChat issue's cases.

With channels' communicator: forged and tampered tokens, raw bytes and repeated parameters
in the query, path tricks, socket floods past small limit overrides, thousands of frames,
frames at and over the byte limit (UTF-8 counted, binary too), bogus notifications on the
conversation's group. Through a real daphne replica (``DaphneStreamAttackTests``): a socket
flood past the default 5 per conversation, frames over daphne's 1 MiB, thousands of frames,
raw WebSocket protocol violations and broken handshakes.

Every refusal: the handshake completes only to carry the documented close code, nothing is
sent, no slot is taken, no group joined, nothing read or written. Every abuse of an open
socket: it never writes, and the slots come back (a new socket per slot still connects).
"""

import asyncio
import json
import struct

import websockets
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import SimpleTestCase, TestCase, override_settings

from notifier.events import NotifyEvent, group_name, watermark_message
from tests.support.attack import (
    claims_for,
    insider_tokens,
    raw_exchange,
    request_bytes,
    tampered_tokens,
)
from tests.support.attack_replica import API, RawWebSocket, ReplicaAttackMixin
from tests.support.streams import (
    TIMEOUT,
    RecordingStreamConsumer,
    append,
    bump,
    communicator,
    group_members,
    make_conversation,
    receive_close,
    receive_set,
    stream_path,
    token_for,
)
from webchat.consumers import CloseCode
from webchat.limits import socket_slots
from webchat.models import Activity, Conversation, Tenant
from webchat.routing import websocket_application
from webchat.tokens import issue_token, signing_key


class StreamAttackTestCase(TestCase):
    def setUp(self):
        self.conversation = make_conversation()
        self.token = token_for(self.conversation)
        self.key = (str(self.conversation.tenant_id), self.conversation.id)
        self.secret = self.conversation.tenant.add_secret()
        self.activities_before = Activity.objects.count()

    async def assertNothingWritten(self):
        self.assertEqual(await Activity.objects.acount(), self.activities_before)
        conversation = await Conversation.objects.aget(pk=self.conversation.pk)
        self.assertEqual(conversation.watermark, self.conversation.watermark)

    def assertNoTraces(self):
        self.assertEqual(socket_slots.conversation_count(*self.key), 0)
        self.assertEqual(socket_slots.tenant_count(self.key[0]), 0)
        self.assertEqual(group_members(self.conversation), set())

    async def refused(self, comm, *codes):
        """The handshake completes only to carry one of ``codes``; nothing else happens."""
        instances = len(RecordingStreamConsumer.instances)
        connected, _ = await comm.connect(TIMEOUT)
        self.assertTrue(connected)
        code = await receive_close(self, comm)
        self.assertIn(code, codes)
        self.assertTrue(await comm.receive_nothing(0.02))
        await comm.disconnect(code=code, timeout=TIMEOUT)
        for consumer in RecordingStreamConsumer.instances[instances:]:
            self.assertEqual(consumer.reads, 0)
        self.assertNoTraces()
        return code

    def with_query(self, query: bytes, conversation_id=None, application=None):
        """A communicator whose raw query string is ``query`` (any bytes, as daphne passes)."""
        path = f"/v3/directline/conversations/{conversation_id or self.conversation.id}/stream"
        comm = communicator(path, *(application,) if application else ())
        # Set before the first await: the application reads the scope when it starts.
        comm.scope["query_string"] = query
        return comm


class TokenTamperingTests(StreamAttackTestCase):
    async def test_forged_and_broken_tokens_are_4401(self):
        claims = claims_for(self.conversation.tenant_id, self.conversation.id)
        tokens = await sync_to_async(tampered_tokens)(claims, signing_key(), self.secret)
        with self.assertLogs("webchat.consumers", "INFO") as logs:
            for name, token in tokens:
                with self.subTest(token=name):
                    comm = communicator(stream_path(self.conversation.id, token))
                    await self.refused(comm, CloseCode.UNAUTHORIZED)
        for _, token in tokens:
            if len(token) > 20:
                self.assertNotIn(token, "\n".join(logs.output))  # never a credential in logs
        await self.assertNothingWritten()

    async def test_correctly_signed_tokens_with_wrong_claims(self):
        other = await sync_to_async(make_conversation)()
        foreign_tenant = await Tenant.objects.acreate(name="globex")
        claims = claims_for(self.conversation.tenant_id, self.conversation.id)
        tokens = insider_tokens(claims, signing_key(), other.id, foreign_tenant.pk)
        with self.assertLogs("webchat.consumers", "INFO"):
            for name, token in tokens:
                with self.subTest(token=name):
                    comm = communicator(stream_path(self.conversation.id, token))
                    expected = {CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN}
                    if name in ("exp in the past", "exp a boolean"):  # PyJWT: True == 1
                        expected = {CloseCode.TOKEN_EXPIRED}
                    await self.refused(comm, *expected)
        await self.assertNothingWritten()

    async def test_tokens_mixing_tenants(self):
        foreign_tenant = await Tenant.objects.acreate(name="globex")
        foreign = await Conversation.objects.acreate(tenant=foreign_tenant)
        cases = [
            (self.conversation.id, issue_token(foreign_tenant.pk, self.conversation.id, "u")),
            (self.conversation.id, issue_token(foreign_tenant.pk, foreign.id, "u")),
            (foreign.id, issue_token(self.conversation.tenant_id, foreign.id, "u")),
            (foreign.id, self.token),
        ]
        with self.assertLogs("webchat.consumers", "INFO"):
            for conversation_id, token in cases:
                with self.subTest(conversation=conversation_id):
                    comm = communicator(stream_path(conversation_id, token))
                    await self.refused(comm, CloseCode.FORBIDDEN)
        self.assertEqual(socket_slots.conversation_count(str(foreign_tenant.pk), foreign.id), 0)


class QueryAndPathTests(StreamAttackTestCase):
    async def test_raw_and_repeated_query_parameters(self):
        token = self.token.encode()
        cases = [
            (b"t=\xff\xfe\x80", CloseCode.UNAUTHORIZED),
            (b"t=" + token + b"\xff", CloseCode.UNAUTHORIZED),
            (b"t=" + token[:-1] + b"%FF", CloseCode.UNAUTHORIZED),
            (b"t=%00" + token, CloseCode.UNAUTHORIZED),
            (b"T=" + token, CloseCode.UNAUTHORIZED),
            (b"token=" + token, CloseCode.UNAUTHORIZED),
            (b"t=&t=" + token, CloseCode.UNAUTHORIZED),  # the first one counts
            (b"t=x&t=" + token, CloseCode.UNAUTHORIZED),
            (b"t=" + b"a" * 2**20, CloseCode.UNAUTHORIZED),
            (b"t=" + b"a." * 2**19, CloseCode.UNAUTHORIZED),
            (b"&" * 100_000 + b"t=" + token + b"&watermark=\xff", CloseCode.BAD_WATERMARK),
            (b"t=" + token + b"&watermark=%00", CloseCode.BAD_WATERMARK),
            (b"t=" + token + b"&watermark=" + b"9" * 10_000, CloseCode.BAD_WATERMARK),
            (b"t=" + token + b"&watermark=%D9%A1", CloseCode.BAD_WATERMARK),  # ARABIC-INDIC 1
            (b"t=" + token + b"&watermark=0x0", CloseCode.BAD_WATERMARK),
            (b"watermark=-0&t=" + token, CloseCode.BAD_WATERMARK),
        ]
        with self.assertLogs("webchat.consumers", "INFO"):
            for query, code in cases:
                with self.subTest(query=query[:40]):
                    await self.refused(self.with_query(query), code)
        await self.assertNothingWritten()

    async def test_a_repeated_token_parameter_uses_the_first(self):
        comm = self.with_query(b"t=" + self.token.encode() + b"&t=garbage&watermark=&watermark=x")
        connected, _ = await comm.connect(TIMEOUT)
        self.assertTrue(connected)
        self.assertTrue(await comm.receive_nothing(0.05))
        await comm.disconnect()
        self.assertNoTraces()

    async def test_tricky_conversation_ids(self):
        ids = ["..", ".", "%00", self.conversation.id + "%00", "a" * 10_240, "%E4%BC%9A",
               "%F0%9F%98%80", "%ED%A0%80", self.conversation.id.upper() + "X", " ",
               self.conversation.id + "%0D%0A"]  # fmt: skip
        with self.assertLogs("webchat.consumers", "INFO"):
            for conversation_id in ids:
                with self.subTest(id=conversation_id[:20]):
                    # The real conversation's token: another conversation.
                    path = stream_path(conversation_id, self.token)
                    await self.refused(
                        communicator(path, websocket_application),
                        CloseCode.FORBIDDEN,
                        CloseCode.NOT_FOUND,
                    )
        await self.assertNothingWritten()

    async def test_tokens_signed_for_ids_that_do_not_exist(self):
        tenant_id = self.conversation.tenant_id
        with self.assertLogs("webchat.consumers", "INFO"):
            for conversation_id in ("a" * 1_000, "会话", "\U0001f600", "..", "x\r\ny"):
                with self.subTest(id=conversation_id[:20]):
                    token = issue_token(tenant_id, conversation_id, "u")
                    comm = WebsocketCommunicator(websocket_application, "/")
                    comm.scope["path"] = f"/v3/directline/conversations/{conversation_id}/stream"
                    comm.scope["query_string"] = b"t=" + token.encode()
                    await self.refused(comm, CloseCode.NOT_FOUND)

    async def test_unknown_stream_paths(self):
        conv = f"/v3/directline/conversations/{self.conversation.id}"
        paths = [conv + "/stream/", conv + "//stream", conv + "/stream/x", conv + "/Stream",
                 "/v3/directline/conversations//stream", "/v3/directline/stream", "/",
                 conv + "/stream%2F", "/" + "a" * 10_000]  # fmt: skip
        with self.assertLogs("webchat.consumers", "INFO"):
            for path in paths:
                with self.subTest(path=path[:60]):
                    comm = communicator(f"{path}?t={self.token}", websocket_application)
                    await self.refused(comm, CloseCode.NOT_FOUND)


class FloodTests(StreamAttackTestCase):
    async def open(self, conversation=None):
        conversation = conversation or self.conversation
        comm = communicator(stream_path(conversation.id, token_for(conversation)))
        connected, _ = await comm.connect(TIMEOUT)
        self.assertTrue(connected)
        return comm

    @override_settings(WEBCHAT_STREAM={"MAX_SOCKETS_PER_CONVERSATION": 2})
    async def test_sockets_past_the_conversation_limit(self):
        opened = [await self.open() for _ in range(2)]
        with self.assertLogs("webchat.consumers", "INFO"):
            for _ in range(10):
                comm = communicator(stream_path(self.conversation.id, self.token))
                connected, _ = await comm.connect(TIMEOUT)
                self.assertEqual(await receive_close(self, comm), CloseCode.TOO_MANY_SOCKETS)
                await comm.disconnect()
        self.assertEqual(socket_slots.conversation_count(*self.key), 2)
        self.assertEqual(len(group_members(self.conversation)), 2)
        # The open ones still stream, once each.
        stored = await append(self.conversation, "after the flood")
        await bump(self.conversation, 1)
        for comm in opened:
            activities, _ = await receive_set(self, comm)
            self.assertEqual([a["id"] for a in activities], [stored["id"]])
            await comm.disconnect()
        self.assertNoTraces()

    @override_settings(WEBCHAT_STREAM={"MAX_SOCKETS_PER_TENANT": 3})
    async def test_sockets_past_the_tenant_limit_across_conversations(self):
        conversations = [await sync_to_async(make_conversation)() for _ in range(6)]
        opened = [await self.open(c) for c in conversations[:3]]
        with self.assertLogs("webchat.consumers", "INFO"):
            for conversation in conversations[3:]:
                comm = communicator(stream_path(conversation.id, token_for(conversation)))
                await comm.connect(TIMEOUT)
                self.assertEqual(await receive_close(self, comm), CloseCode.TOO_MANY_SOCKETS)
                await comm.disconnect()
        self.assertEqual(socket_slots.tenant_count(self.key[0]), 3)
        for comm in opened:
            await comm.disconnect()
        self.assertEqual(socket_slots.tenant_count(self.key[0]), 0)

    @override_settings(
        WEBCHAT_STREAM={"MAX_SOCKETS_PER_CONVERSATION": 1, "MAX_SOCKETS_PER_TENANT": 1}
    )
    async def test_refused_and_churned_sockets_take_no_slot(self):
        with self.assertLogs("webchat.consumers", "INFO"):
            for token in ("garbage", "", "a.b.c") * 20:
                await self.refused(
                    communicator(stream_path(self.conversation.id, token)), CloseCode.UNAUTHORIZED
                )
        for _ in range(100):  # connect and vanish without a close frame
            comm = await self.open()
            await comm.disconnect()
        self.assertNoTraces()
        last = await self.open()  # the one slot is free
        self.assertTrue(await last.receive_nothing(0.02))
        await last.disconnect()
        self.assertNoTraces()


class FrameTests(StreamAttackTestCase):
    async def open(self):
        comm = communicator(stream_path(self.conversation.id, self.token))
        connected, _ = await comm.connect(TIMEOUT)
        self.assertTrue(connected)
        return comm

    async def test_thousands_of_frames_change_nothing(self):
        comm = await self.open()
        frames = [
            {"text": ""}, {"text": " "}, {"text": "{}"}, {"text": "null"},
            {"text": '{"type": "message", "text": "not a post"}'},
            {"text": '{"activities": [], "watermark": "99"}'}, {"bytes": b"\x00\xff"},
            {"bytes": b""}, {"text": "\U0001f600" * 100}, {}, {"text": None, "bytes": None},
        ]  # fmt: skip
        for index in range(2_200):
            await comm.send_input({"type": "websocket.receive", **frames[index % len(frames)]})
        self.assertTrue(await comm.receive_nothing(0.2))
        await self.assertNothingWritten()
        stored = await append(self.conversation, "still streaming")
        await bump(self.conversation, 1)
        activities, watermark = await receive_set(self, comm)
        self.assertEqual(([a["id"] for a in activities], watermark), ([stored["id"]], 1))
        self.assertTrue(await comm.receive_nothing(0.05))
        await comm.disconnect()
        self.assertNoTraces()

    @override_settings(WEBCHAT_STREAM={"MAX_FRAME_BYTES": 1024})
    async def test_frames_at_and_over_a_small_limit(self):
        at_limit = [
            {"text": "x" * 1024}, {"bytes": b"x" * 1024}, {"text": "€" * 341},  # 1,023 bytes
            {"text": "\U0001f600" * 256}, {"text": "é" * 512},
        ]  # fmt: skip
        over = [
            {"text": "x" * 1025}, {"bytes": b"x" * 1025}, {"text": "€" * 342},  # 1,026 bytes
            {"text": "\U0001f600" * 257}, {"text": "é" * 513}, {"text": "x" * 2**20},
        ]  # fmt: skip
        comm = await self.open()
        for frame in at_limit:
            await comm.send_input({"type": "websocket.receive", **frame})
        self.assertTrue(await comm.receive_nothing(0.05))
        await comm.disconnect()
        for frame in over:
            with self.subTest(frame=repr(frame)[:30]), self.assertLogs("webchat.consumers"):
                comm = await self.open()
                await comm.send_input({"type": "websocket.receive", **frame})
                self.assertEqual(await receive_close(self, comm), CloseCode.MESSAGE_TOO_BIG)
                # Frames after the close change nothing.
                await comm.send_input({"type": "websocket.receive", **frame})
                await comm.disconnect()
        self.assertNoTraces()
        await self.assertNothingWritten()

    async def test_bogus_notifications_on_the_group(self):
        comm = await self.open()
        group = group_name(*self.key)
        layer = get_channel_layer()
        bogus = [
            {"type": "webchat.watermark", "tenant_id": self.key[0],
             "conversation_id": self.key[1], "watermark": value}
            for value in ("5", True, None, -1, 0, 1.5, [1], {"n": 1})
        ] + [
            {**watermark_message(NotifyEvent("other", self.key[1], 5))},
            {**watermark_message(NotifyEvent(self.key[0], "other", 5))},
            {"type": "webchat.unknown"},
            {"type": "webchat.watermark"},
        ]  # fmt: skip
        with self.assertLogs("webchat.consumers", "WARNING"):
            for message in bogus:
                await layer.group_send(group, message)
            self.assertTrue(await comm.receive_nothing(0.1))
        # A watermark past anything real costs one empty read and hides nothing later.
        await bump(self.conversation, 2**64 - 1)
        self.assertTrue(await comm.receive_nothing(0.1))
        stored = await append(self.conversation, "real")
        await bump(self.conversation, 1)
        activities, watermark = await receive_set(self, comm)
        self.assertEqual(([a["id"] for a in activities], watermark), ([stored["id"]], 1))
        await comm.disconnect()
        self.assertNoTraces()


class DaphneStreamAttackTests(ReplicaAttackMixin, SimpleTestCase):
    """The stream of a production-configured daphne replica, with real and raw clients."""

    def setUp(self):
        # A fresh conversation per test: its five slots are this test's alone.
        self.conversation_id, self.token = self.start_conversation()
        self.url = (
            f"{self.replica.ws_url}{API}/conversations/{self.conversation_id}/stream"
            f"?watermark=&t={self.token}"
        )
        super().setUp()

    def tearDown(self):
        super().tearDown()
        self.assertNotIn(b"Exception inside application", self.replica.log_path.read_bytes())

    async def closed_with(self, ws):
        """The code the server closed ``ws`` with (1006 when it dropped the connection)."""
        with self.assertRaises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        return closed.exception.rcvd.code if closed.exception.rcvd else 1006

    async def assertAllFiveSlotsFree(self):
        """Five sockets connect and stay open; a sixth is refused: no slot leaked."""
        sockets = [await websockets.connect(self.url, open_timeout=TIMEOUT) for _ in range(5)]
        try:
            for ws in sockets:
                try:  # the replay, if the test wrote; then nothing, and no close
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
                    self.assertEqual(set(frame), {"activities", "watermark"})
                    await asyncio.wait_for(ws.recv(), 0.3)
                    self.fail("a second frame nobody asked for")
                except TimeoutError:
                    pass
            async with websockets.connect(self.url, open_timeout=TIMEOUT) as sixth:
                self.assertEqual(await self.closed_with(sixth), CloseCode.TOO_MANY_SOCKETS)
        finally:
            for ws in sockets:
                await ws.close()

    async def test_a_socket_flood_past_five_per_conversation(self):
        opened = [await websockets.connect(self.url, open_timeout=TIMEOUT) for _ in range(5)]
        for _ in range(15):
            async with websockets.connect(self.url, open_timeout=TIMEOUT) as extra:
                self.assertEqual(await self.closed_with(extra), CloseCode.TOO_MANY_SOCKETS)
        status, posted = await asyncio.to_thread(
            self.cluster.http, 0, "POST", f"{API}/conversations/{self.conversation_id}/activities",
            {"type": "message", "text": "to the five"}, token=self.token,
        )  # fmt: skip
        self.assertEqual(status, 200, posted)
        for ws in opened:
            frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            self.assertIn(posted["id"], [a["id"] for a in frame["activities"]])
            await ws.close()
        await asyncio.sleep(0.5)  # the bot's reply lands too
        self.before = self.counts()
        await self.assertAllFiveSlotsFree()

    async def test_frames_over_the_limit_floods_and_binary_frames(self):
        over = await websockets.connect(self.url, open_timeout=TIMEOUT, max_size=None)
        await over.send("x" * (1024 * 1024 + 1))
        self.assertIn(await self.closed_with(over), {1006, 1009})
        async with websockets.connect(self.url, open_timeout=TIMEOUT) as ws:
            for index in range(5_000):
                await ws.send(("", "{}", b"\x00\xff", "x" * 100, b"")[index % 5])
            with self.assertRaises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)  # nothing answers a client frame
            self.assertEqual(self.counts(), self.before)
        await self.assertAllFiveSlotsFree()

    async def test_raw_protocol_violations(self):
        path = f"{API}/conversations/{self.conversation_id}/stream?t={self.token}"
        text, binary, ping, close = 0x1, 0x2, 0x9, 0x8
        cases = [
            ("invalid UTF-8 in a text frame", [(text, b"\xff\xfe", {})]),
            ("an encoded surrogate in a text frame", [(text, b"\xed\xa0\x80", {})]),
            ("an unmasked frame", [(text, b"hello", {"mask": False})]),
            ("a ping over 125 bytes", [(ping, b"p" * 200, {})]),
            ("a fragmented ping", [(ping, b"p", {"fin": False})]),
            ("a continuation with no start", [(0x0, b"tail", {})]),
            ("a reserved opcode", [(0x3, b"?", {})]),
            ("reserved bits", [(text, b"x", {"rsv": 0b111})]),
            ("a close code of 999", [(close, struct.pack("!H", 999), {})]),
            ("a close code of 1005", [(close, struct.pack("!H", 1005), {})]),
            ("a close payload of one byte", [(close, b"\x03", {})]),
            ("a new message inside a fragmented one", [(text, b"a", {"fin": False}),
                                                       (binary, b"b", {})]),
            ("a fragmented frame of 2 MiB", [(text, b"x" * 2**20, {"fin": False}),
                                            (0x0, b"x" * 2**20, {})]),
        ]  # fmt: skip
        for case, frames in cases:
            with self.subTest(case):
                client = await asyncio.to_thread(RawWebSocket.connect, self.replica.port, path)
                try:
                    self.assertEqual(client.status, 101, client.head)
                    for opcode, payload, options in frames:
                        client.send_frame(opcode, payload, **options)
                    code = await asyncio.to_thread(client.close_code)
                    self.assertIn(code, {None, 1002, 1007, 1009}, case)
                finally:
                    client.close()
        await self.assertAllFiveSlotsFree()

    async def test_broken_handshakes(self):
        stream = f"{API}/conversations/{self.conversation_id}/stream"
        good = f"{stream}?t={self.token}".encode()
        upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        key = [("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")]
        v13 = [("Sec-WebSocket-Version", "13")]
        cases = [
            ("no key", request_bytes("GET", good, upgrade + v13)),
            # (autobahn also speaks the hybi drafts' version 8)
            ("version 99", request_bytes("GET", good, upgrade + key
                                         + [("Sec-WebSocket-Version", "99")])),
            ("a POST upgrade", request_bytes("POST", good, upgrade + key + v13)),
            ("raw bytes in the query",
             request_bytes("GET", stream.encode() + b"?t=\xff\xfe", upgrade + key + v13)),
            ("a protocol header of 64 KB", request_bytes(
                "GET", good, upgrade + key + v13 + [("Sec-WebSocket-Protocol", "p," * 32_000)])),
        ]  # fmt: skip
        for case, data in cases:
            with self.subTest(case):
                response = await asyncio.to_thread(raw_exchange, self.replica.port, data, 5.0)
                self.assertIn(response.status, {None, 400, 403, 404, 405, 426}, case)
        # Refusals through a real client, the token in a percent-encoded mess.
        for query, code in (
            (f"t={self.token}%FF", 4401),
            ("t=%00", 4401),
            ("T=x", 4401),
            (f"t={self.token}&watermark=%D9%A1", 4400),
        ):
            async with websockets.connect(
                f"{self.replica.ws_url}{stream}?{query}", open_timeout=TIMEOUT
            ) as ws:
                self.assertEqual(await self.closed_with(ws), code, query)
        await self.assertAllFiveSlotsFree()
