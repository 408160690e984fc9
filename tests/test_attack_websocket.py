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

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import TestCase, override_settings

from notifier.events import NotifyEvent, group_name, watermark_message
from tests.support.attack import claims_for, insider_tokens, tampered_tokens
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
