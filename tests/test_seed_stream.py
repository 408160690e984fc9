"""The stream on the seed's layout and with its token in Sec-WebSocket-Protocol (issue 15)."""

from channels.testing import WebsocketCommunicator
from django.test import TestCase

from tests.support.streams import (
    TIMEOUT,
    append,
    make_conversation,
    receive_close,
    receive_set,
    stream_path,
    token_for,
)
from webchat.consumers import CloseCode
from webchat.models import Tenant
from webchat.routing import websocket_application
from webchat.stream_auth import offered_token


def seed_stream_path(tenant, conversation_id, token=None, watermark="", surface="messaging"):
    path = stream_path(conversation_id, token, watermark)
    return f"/v1/{surface}/webchat/{tenant}{path}"


class SeedStreamTests(TestCase):
    def setUp(self):
        self.conversation = make_conversation("Acme Corp")
        self.token = token_for(self.conversation)

    async def open(self, path, subprotocols=None):
        comm = WebsocketCommunicator(websocket_application, path, subprotocols=subprotocols)
        connected, subprotocol = await comm.connect(TIMEOUT)
        self.assertTrue(connected)
        return comm, subprotocol

    async def assert_streams(self, comm):
        """A new activity reaches ``comm`` (after the replay of the earlier ones, if any)."""
        activity = await append(self.conversation, "hello")
        activities, watermark = await receive_set(self, comm)
        self.assertEqual(activities[-1]["id"], activity["id"])
        self.assertEqual(watermark, int(activity["id"].rsplit("|", 1)[1]))

    async def test_stream_under_the_tenants_prefix_by_name_and_slug(self):
        paths = [
            seed_stream_path("Acme%20Corp", self.conversation.id, self.token),
            seed_stream_path("acme-corp", self.conversation.id, self.token, surface="web"),
        ]
        for path in paths:
            with self.subTest(path=path[:40]):
                comm, subprotocol = await self.open(path)
                self.assertIsNone(subprotocol)
                await self.assert_streams(comm)
                await comm.disconnect()

    async def test_another_tenant_in_the_path_is_4403_an_unknown_one_4404(self):
        await Tenant.objects.acreate(name="other")
        cases = [("other", CloseCode.FORBIDDEN), ("nobody", CloseCode.NOT_FOUND)]
        for tenant, code in cases:
            with self.subTest(tenant=tenant):
                path = seed_stream_path(tenant, self.conversation.id, self.token)
                with self.assertLogs("webchat.consumers", "INFO") as logs:
                    comm, _ = await self.open(path)
                    self.assertEqual(await receive_close(self, comm), code)
                    await comm.disconnect()
                self.assertNotIn(self.token, "\n".join(logs.output))

    async def test_token_in_the_subprotocol_is_read_and_echoed(self):
        for path in (
            stream_path(self.conversation.id, watermark=""),
            seed_stream_path("acme-corp", self.conversation.id),
        ):
            with self.subTest(path=path[:40]):
                comm, subprotocol = await self.open(path, subprotocols=[self.token])
                self.assertEqual(subprotocol, self.token)
                await self.assert_streams(comm)
                await comm.disconnect()

    async def test_refusals_echo_the_subprotocol_so_browsers_see_the_code(self):
        other = await Tenant.objects.acreate(name="other")
        foreign = token_for(await type(self.conversation).objects.acreate(tenant=other))
        comm, subprotocol = await self.open(
            stream_path(self.conversation.id), subprotocols=[foreign]
        )
        self.assertEqual(subprotocol, foreign)
        self.assertEqual(await receive_close(self, comm), CloseCode.FORBIDDEN)
        await comm.disconnect()

    async def test_query_token_wins_and_other_protocols_are_not_tokens(self):
        path = stream_path(self.conversation.id, self.token, "")
        comm, subprotocol = await self.open(path, subprotocols=["chat", "not.a-token"])
        self.assertIsNone(subprotocol)
        await self.assert_streams(comm)
        await comm.disconnect()

    async def test_no_token_anywhere_is_4401(self):
        comm, _ = await self.open(stream_path(self.conversation.id), subprotocols=["chat"])
        self.assertEqual(await receive_close(self, comm), CloseCode.UNAUTHORIZED)
        await comm.disconnect()


class OfferedTokenTests(TestCase):
    def test_only_jwt_shaped_values(self):
        self.assertEqual(offered_token({"subprotocols": ["chat", " a.b.c "]}), "a.b.c")
        self.assertIsNone(offered_token({"subprotocols": ["a.b", "x"]}))
        self.assertIsNone(offered_token({}))
