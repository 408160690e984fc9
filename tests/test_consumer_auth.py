"""The stream refuses bad tokens, bad watermarks and unknown conversations with a close code."""

import jwt
from asgiref.sync import sync_to_async
from django.test import SimpleTestCase, TestCase

from tests.support.streams import (
    assert_refused,
    communicator,
    expired_token_for,
    group_members,
    make_conversation,
    receive_set,
    stream_path,
    token_for,
)
from webchat.consumers import CloseCode, parse_watermark
from webchat.limits import socket_slots
from webchat.models import Tenant
from webchat.routing import websocket_application
from webchat.tokens import issue_token


class StreamAuthTests(TestCase):
    def setUp(self):
        self.conversation = make_conversation()
        self.token = token_for(self.conversation)

    async def refused(self, path, code, application=None):
        comm = communicator(path) if application is None else communicator(path, application)
        with self.assertLogs("webchat.consumers", "INFO") as logs:
            await assert_refused(self, comm, code)
        # Logged with its code, never with the token.
        self.assertIn(str(int(code)), "\n".join(logs.output))
        token = path.partition("t=")[2]
        if token:
            self.assertNotIn(token, "\n".join(logs.output))
        # Nothing else happened: no slot taken, no group joined.
        self.assertEqual(
            socket_slots.conversation_count(str(self.conversation.tenant_id), self.conversation.id),
            0,
        )
        self.assertEqual(group_members(self.conversation), set())

    async def test_missing_token(self):
        await self.refused(stream_path(self.conversation.id), CloseCode.UNAUTHORIZED)
        await self.refused(stream_path(self.conversation.id, token=""), CloseCode.UNAUTHORIZED)

    async def test_malformed_token(self):
        await self.refused(stream_path(self.conversation.id, "not-a-jwt"), CloseCode.UNAUTHORIZED)

    async def test_token_signed_with_another_key(self):
        claims = jwt.decode(self.token, options={"verify_signature": False})
        forged = jwt.encode(claims, "another-key-that-is-long-enough-for-hs256", "HS256")
        await self.refused(stream_path(self.conversation.id, forged), CloseCode.UNAUTHORIZED)

    async def test_expired_token(self):
        token = expired_token_for(self.conversation)
        await self.refused(stream_path(self.conversation.id, token), CloseCode.TOKEN_EXPIRED)

    async def test_token_for_another_conversation(self):
        other = await sync_to_async(make_conversation)()
        path = stream_path(self.conversation.id, token_for(other))
        await self.refused(path, CloseCode.FORBIDDEN)

    async def test_token_of_another_tenant(self):
        other_tenant = await Tenant.objects.acreate(name="other")
        token = issue_token(other_tenant.pk, self.conversation.id, "user-1")
        await self.refused(stream_path(self.conversation.id, token), CloseCode.FORBIDDEN)

    async def test_unknown_conversation(self):
        token = issue_token(self.conversation.tenant_id, "no-such-conversation", "user-1")
        await self.refused(stream_path("no-such-conversation", token), CloseCode.NOT_FOUND)

    async def test_bad_watermarks(self):
        for raw in ["abc", "-1", "1.5", "1e3", "%EF%BC%91", "+1", "99999999999999999999", " 1"]:
            with self.subTest(watermark=raw):
                path = stream_path(self.conversation.id, self.token, watermark=raw)
                await self.refused(path, CloseCode.BAD_WATERMARK)

    async def test_watermark_ahead_of_conversation(self):
        path = stream_path(self.conversation.id, self.token, watermark=1)
        await self.refused(path, CloseCode.BAD_WATERMARK)

    async def test_unknown_path(self):
        path = f"/v3/directline/conversations/{self.conversation.id}/nope?t={self.token}"
        await self.refused(path, CloseCode.NOT_FOUND, application=websocket_application)

    async def test_valid_token_is_accepted(self):
        comm = communicator(stream_path(self.conversation.id, self.token, watermark=""))
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        self.assertTrue(await comm.receive_nothing(0.1))
        await comm.disconnect()

    async def test_production_routing_serves_the_stream(self):
        await sync_to_async(self.conversation.activities.create)(
            sequence=1, data={"type": "message", "id": "x"}
        )
        await self.conversation.__class__.objects.filter(pk=self.conversation.pk).aupdate(
            watermark=1
        )
        comm = communicator(stream_path(self.conversation.id, self.token), websocket_application)
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        activities, watermark = await receive_set(self, comm)
        self.assertEqual((activities, watermark), ([{"type": "message", "id": "x"}], 1))
        await comm.disconnect()


class ParseWatermarkTests(SimpleTestCase):
    def test_values(self):
        self.assertEqual(parse_watermark(None), 0)
        self.assertEqual(parse_watermark(""), 0)
        self.assertEqual(parse_watermark("0"), 0)
        self.assertEqual(parse_watermark("0007"), 7)
        self.assertEqual(parse_watermark(str(2**63 - 1)), 2**63 - 1)
        for bad in [str(2**63), "-0", "٣", "1 ", "0x1"]:
            self.assertIsNone(parse_watermark(bad), bad)
