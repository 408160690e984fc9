"""The token lifecycle (README "Token lifecycle"): TTL and its settings, sliding renewal
(``_directline.renewed_token``), refresh of an expired token while the conversation is
alive, the maximum session lifetime, the tenant token epoch, and the stream's part in it.

Tokens are backdated with ``issue_token(at=...)`` and conversations made idle through their
``last_seen`` column: real clocks, real database.
"""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

from asgiref.sync import async_to_sync, sync_to_async
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.test import TestCase, override_settings

from tests.support.streams import assert_refused, communicator, receive_close, stream_path
from webchat import tokens
from webchat.checks import check_settings
from webchat.conf import settings as webchat_settings
from webchat.consumers import CloseCode
from webchat.models import Conversation, TenantSecret
from webchat.tokens import check_short_ttl, issue_token, read_token

from .directline_support import DirectLineMixin

ROOT = Path(__file__).resolve().parent.parent
TTL = 1800  # the default, as the seed's


class RenewalTests(DirectLineMixin, TestCase):
    def activities(self):
        return f"/conversations/{self.conversation.id}/activities"

    def test_defaults_are_the_seeds(self):
        self.assertEqual(webchat_settings.token_ttl, TTL)
        response = self.post_json("/tokens/generate", {}, self.secret)
        claims = read_token(response.json()["token"])
        self.assertEqual(response.json()["expires_in"], TTL)
        self.assertEqual(claims.expires_at - claims.issued_at, TTL)
        self.assertEqual(claims.session_start, claims.issued_at)

    @override_settings(WEBCHAT_TOKENS={"TTL": 120, "MAX_SESSION": 3600})
    def test_ttl_comes_from_the_setting(self):
        response = self.post_json("/tokens/generate", {}, self.secret)
        self.assertEqual(response.json()["expires_in"], 120)
        refreshed = self.post_json("/tokens/refresh", None, response.json()["token"]).json()
        self.assertEqual(refreshed["expires_in"], 120)

    def test_a_post_always_carries_the_renewed_token(self):
        response = self.post_json(self.activities(), {"type": "message", "text": "hi"}, self.token)
        self.assertEqual(response.status_code, 200)
        renewal = response.json()["_directline"]
        self.assertEqual(set(renewal), {"renewed_token", "expires_in"})
        self.assertEqual(renewal["expires_in"], TTL)
        old, new = read_token(self.token), read_token(renewal["renewed_token"])
        self.assertEqual(
            (new.tenant_id, new.conversation_id, new.user_id, new.user_name, new.session_start),
            (old.tenant_id, old.conversation_id, old.user_id, old.user_name, old.session_start),
        )
        # The renewed token works like the old one.
        again = self.post_json(self.activities(), {"type": "message"}, renewal["renewed_token"])
        self.assertEqual(again.status_code, 200)

    def test_a_poll_carries_it_only_once_the_token_is_past_half_its_life(self):
        fresh = self.get(self.activities(), self.token)
        self.assertNotIn("_directline", fresh.json())
        young = issue_token(self.tenant.pk, self.conversation.id, "u", at=tokens.now() - 800)
        self.assertNotIn("_directline", self.get(self.activities(), young).json())
        old = issue_token(self.tenant.pk, self.conversation.id, "u", at=tokens.now() - 1000)
        body = self.get(self.activities(), old).json()
        self.assertEqual(read_token(body["_directline"]["renewed_token"]).user_id, "u")

    def test_a_secret_gets_no_renewal(self):
        body = self.post_json(
            self.activities(), {"type": "message", "from": {"id": "u"}}, self.secret
        ).json()
        self.assertNotIn("_directline", body)
        self.assertNotIn("_directline", self.get(self.activities(), self.secret).json())

    def test_reconnect_and_start_continue_the_session(self):
        started = tokens.now() - 3000
        token = issue_token(self.tenant.pk, self.conversation.id, "u", at=started)
        self.touch(tokens.now())
        for response in (
            self.get(f"/conversations/{self.conversation.id}", token),
            self.post_json("/conversations", {}, token),
        ):
            renewed = read_token(response.json()["token"])
            self.assertEqual(renewed.session_start, started)
            self.assertEqual(renewed.expires_at - renewed.issued_at, TTL)

    def touch(self, seen_at):
        Conversation.objects.filter(pk=self.conversation.pk).update(last_seen=seen_at)


class ExpiredTokenTests(DirectLineMixin, TestCase):
    """An expired token is good while its conversation is alive: a client used it (any
    accepted call, or an open stream) less than a TTL ago."""

    def setUp(self):
        super().setUp()
        self.expired = issue_token(
            self.tenant.pk, self.conversation.id, "user-1", at=tokens.now() - 2 * TTL
        )

    def set_last_seen(self, seen_at):
        Conversation.objects.filter(pk=self.conversation.pk).update(last_seen=seen_at)

    def test_refresh_takes_an_expired_token_of_a_live_conversation(self):
        self.set_last_seen(tokens.now() - TTL + 60)
        response = self.post_json("/tokens/refresh", None, self.expired)
        self.assertEqual(response.status_code, 200, response.content)
        renewed = read_token(response.json()["token"])
        self.assertEqual(renewed.conversation_id, self.conversation.id)
        self.assertGreater(renewed.expires_at, tokens.now())
        # And it recorded the client: the conversation is alive for another TTL.
        self.conversation.refresh_from_db()
        self.assertGreaterEqual(self.conversation.last_seen, tokens.now() - 1)

    def test_refresh_refuses_it_once_the_conversation_is_idle(self):
        self.set_last_seen(tokens.now() - TTL - 1)
        for call in (
            lambda: self.post_json("/tokens/refresh", None, self.expired),
            lambda: self.post_json(
                f"/conversations/{self.conversation.id}/activities",
                {"type": "message"},
                self.expired,
            ),
            lambda: self.get(f"/conversations/{self.conversation.id}", self.expired),
        ):
            error = self.assertDirectLineError(call(), 403, "TokenExpired")
            self.assertIn("saw no client", error["message"])
        self.assertEqual(self.activity_count(), 0)

    def test_every_call_of_a_live_conversation_takes_it(self):
        self.set_last_seen(tokens.now())
        path = f"/conversations/{self.conversation.id}"
        response = self.post_json(path + "/activities", {"type": "message"}, self.expired)
        self.assertEqual(response.status_code, 200)
        self.assertIn("renewed_token", response.json()["_directline"])
        poll = self.get(path + "/activities", self.expired)
        self.assertIn("renewed_token", poll.json()["_directline"])
        self.assertEqual(self.get(path, self.expired).status_code, 200)

    def test_the_stream_still_wants_a_live_token(self):
        # As in the seed: the socket's URL token is checked strictly; the client gets a fresh
        # streamUrl from GET /conversations/{id}, which takes the expired token.
        self.set_last_seen(tokens.now())
        path = stream_path(self.conversation.id, self.expired)

        async def connect():
            with self.assertLogs("webchat.consumers", "INFO"):
                await assert_refused(self, communicator(path), CloseCode.TOKEN_EXPIRED)

        async_to_sync(connect)()


class MaxSessionTests(DirectLineMixin, TestCase):
    @override_settings(WEBCHAT_TOKENS={"TTL": 600, "MAX_SESSION": 3600})
    def test_renewal_stops_at_the_sessions_end(self):
        started = tokens.now() - 3500
        Conversation.objects.filter(pk=self.conversation.pk).update(last_seen=tokens.now())
        token = issue_token(self.tenant.pk, self.conversation.id, "u", at=started)
        response = self.post_json("/tokens/refresh", None, token)
        self.assertEqual(response.status_code, 200)
        renewed = read_token(response.json()["token"])
        # Never past the session's end: 100 s left, not a full TTL.
        self.assertEqual(renewed.expires_at, started + 3600)
        self.assertLessEqual(response.json()["expires_in"], 100)
        posted = self.post_json(
            f"/conversations/{self.conversation.id}/activities", {"type": "message"}, token
        ).json()
        renewed = read_token(posted["_directline"]["renewed_token"])
        self.assertEqual(renewed.expires_at, started + 3600)
        self.assertEqual(
            posted["_directline"]["expires_in"], renewed.expires_at - renewed.issued_at
        )

    @override_settings(WEBCHAT_TOKENS={"TTL": 600, "MAX_SESSION": 3600})
    def test_nothing_extends_a_session_past_its_maximum_lifetime(self):
        # Alive (seen just now), but the session is older than MAX_SESSION.
        Conversation.objects.filter(pk=self.conversation.pk).update(last_seen=tokens.now())
        token = issue_token(self.tenant.pk, self.conversation.id, "u", at=tokens.now() - 3601)
        path = f"/conversations/{self.conversation.id}"
        for response in (
            self.post_json("/tokens/refresh", None, token),
            self.post_json(path + "/activities", {"type": "message"}, token),
            self.get(path + "/activities", token),
            self.get(path, token),
            self.post_json("/conversations", {}, token),
        ):
            error = self.assertDirectLineError(response, 403, "TokenExpired")
            self.assertIn("maximum lifetime (3600 s)", error["message"])
        self.assertEqual(self.activity_count(), 0)


class EpochTests(DirectLineMixin, TestCase):
    """Revoking a secret revokes every token of its tenant (tokens do not say which secret
    minted them); other tenants are untouched."""

    def assert_revoked(self, token):
        path = f"/conversations/{self.conversation.id}"
        for response in (
            self.post_json("/tokens/refresh", None, token),
            self.post_json(path + "/activities", {"type": "message"}, token),
            self.get(path + "/activities", token),
            self.get(path, token),
        ):
            error = self.assertDirectLineError(response, 403, "TokenExpired")
            self.assertIn("revoked", error["message"])

    def run_command(self, *args):
        out = StringIO()
        call_command("create_tenant", *args, stdout=out)
        return out.getvalue().splitlines()

    def test_rotating_with_revoke_old_revokes_the_tokens(self):
        other_token = issue_token(
            self.other_tenant.pk,
            Conversation.objects.create(tenant=self.other_tenant).id,
            "u",
        )
        new_secret = self.run_command("tenant-a", "--new-secret", "--revoke-old")[-1]
        self.assert_revoked(self.token)
        # The old secret is gone, the new one works and its tokens are good.
        self.assertDirectLineError(self.post_json("/tokens/generate", {}, self.secret), 403)
        fresh = self.post_json("/tokens/generate", {}, new_secret).json()
        refreshed = self.post_json("/tokens/refresh", None, fresh["token"])
        self.assertEqual(refreshed.status_code, 200)
        # Tenant B's tokens still work.
        self.assertEqual(self.post_json("/tokens/refresh", None, other_token).status_code, 200)

    def test_a_new_secret_alone_keeps_the_tokens(self):
        self.run_command("tenant-a", "--new-secret")
        self.assertEqual(self.post_json("/tokens/refresh", None, self.token).status_code, 200)

    def test_revoke_tokens_keeps_the_secret(self):
        lines = self.run_command("tenant-a", "--revoke-tokens")
        self.assertIn("token epoch is now 1", lines[-1])
        self.assert_revoked(self.token)
        fresh = self.post_json("/tokens/generate", {}, self.secret).json()
        self.assertEqual(read_token(fresh["token"]).epoch, 1)
        self.assertEqual(self.post_json("/tokens/refresh", None, fresh["token"]).status_code, 200)

    def test_tokens_minted_without_a_secret_carry_the_current_epoch(self):
        # The seed's public token endpoint mints with new_conversation_token(request, tenant).
        from django.test import RequestFactory

        from webchat.views.tokens import new_conversation_token

        self.tenant.revoke_tokens()
        request = RequestFactory().post("/token", b"{}", content_type="application/json")
        body = json.loads(new_conversation_token(request, self.tenant.pk).content)
        self.assertEqual(read_token(body["token"]).epoch, 1)
        self.assertEqual(self.post_json("/tokens/refresh", None, body["token"]).status_code, 200)

    def test_command_mistakes_are_errors(self):
        from django.core.management import CommandError

        for args, message in (
            (("tenant-a", "--revoke-old"), "--revoke-old needs --new-secret"),
            (("tenant-a", "--revoke-tokens", "--new-secret"), "--revoke-tokens alone"),
            (("nobody", "--revoke-tokens"), "No tenant 'nobody'"),
        ):
            with self.subTest(args=args), self.assertRaisesMessage(CommandError, message):
                self.run_command(*args)
        self.tenant.refresh_from_db()
        self.assertEqual(self.tenant.token_epoch, 0)
        self.assertEqual(self.post_json("/tokens/refresh", None, self.token).status_code, 200)

    def test_revoking_a_secret_as_the_admin_does_revokes_the_tokens(self):
        secret = TenantSecret.objects.get(tenant=self.tenant)
        secret.revoked = True
        secret.save()  # what the admin's list_editable "revoked" does
        self.assert_revoked(self.token)
        # Saving it again (still revoked) does not move the epoch again.
        secret.save()
        self.tenant.refresh_from_db()
        self.assertEqual(self.tenant.token_epoch, 1)

    def test_the_stream_refuses_a_revoked_token(self):
        self.tenant.revoke_tokens()
        path = stream_path(self.conversation.id, self.token)

        async def connect():
            with self.assertLogs("webchat.consumers", "INFO"):
                await assert_refused(self, communicator(path), CloseCode.TOKEN_EXPIRED)

        async_to_sync(connect)()


class StreamKeepsAliveTests(DirectLineMixin, TestCase):
    """An open stream keeps its conversation alive: it records the client when it opens and,
    at most every tenth of the TTL, on the client's frames (Direct Line clients ping every
    20 s)."""

    async def set_last_seen(self, seen_at):
        await Conversation.objects.filter(pk=self.conversation.pk).aupdate(last_seen=seen_at)

    async def wait_last_seen(self, comm):
        for _ in range(100):
            conversation = await Conversation.objects.aget(pk=self.conversation.pk)
            if conversation.last_seen:
                return conversation.last_seen
            await comm.receive_nothing(0.02)
        self.fail("the stream did not record the client")

    @override_settings(WEBCHAT_TOKENS={"TTL": 5})  # a write at most every 1 s
    async def test_an_open_stream_records_the_client(self):
        await self.set_last_seen(0)
        comm = communicator(stream_path(self.conversation.id, self.token))
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        self.assertGreaterEqual(await self.wait_last_seen(comm), tokens.now() - 2)
        await self.set_last_seen(0)
        await comm.receive_nothing(1.1)
        await comm.send_input({"type": "websocket.receive", "text": ""})  # the client's ping
        self.assertGreaterEqual(await self.wait_last_seen(comm), tokens.now() - 2)
        await comm.disconnect()

    @override_settings(WEBCHAT_TOKENS={"TTL": 5})  # a check at most every 1 s
    async def test_an_open_stream_closes_once_its_tokens_are_revoked(self):
        comm = communicator(stream_path(self.conversation.id, self.token))
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        await self.wait_last_seen(comm)
        await self.tenant.arefresh_from_db()
        await sync_to_async(self.tenant.revoke_tokens)()
        with self.assertLogs("webchat.consumers", "INFO") as logs:
            for _ in range(40):  # the client's pings, until the check has run
                await comm.send_input({"type": "websocket.receive", "text": ""})
                if not await comm.receive_nothing(0.1):
                    break
            self.assertEqual(await receive_close(self, comm), CloseCode.TOKEN_EXPIRED)
        self.assertIn("revoked or session over", "\n".join(logs.output))


class SettingsTests(TestCase):
    def test_checks(self):
        cases = [
            ({"TTL": 0}, Error, "webchat.E050"),
            ({"TTL": 604_801}, Error, "webchat.E050"),
            ({"TTL": "60"}, Error, "webchat.E050"),
            ({"TTL": True}, Error, "webchat.E050"),
            ({"TTL": 600, "MAX_SESSION": 599}, Error, "webchat.E050"),
            ({"MAX_SESSION": 366 * 86400 + 1}, Error, "webchat.E050"),
            ({"TLL": 600}, Error, "webchat.E050"),
            ([("TTL", 600)], Error, "webchat.E050"),
            ({"TTL": 2}, Warning, "webchat.W050"),
        ]
        for value, kind, check_id in cases:
            with self.subTest(value=value), override_settings(WEBCHAT_TOKENS=value):
                found = check_settings() + check_short_ttl()
                self.assertEqual([(type(m), m.id) for m in found], [(kind, check_id)])
        with override_settings(WEBCHAT_TOKENS={"TTL": 60, "MAX_SESSION": 60}):
            self.assertEqual(check_settings() + check_short_ttl(), [])

    def test_dev_key_file_must_be_a_path(self):
        with override_settings(WEBCHAT_DEV_KEY_FILE=42):
            self.assertEqual([m.id for m in check_settings()], ["webchat.E051"])

    def settings_in_a_process(self, **env) -> str:
        code = (
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'webchat.settings'; "
            "from django.conf import settings; print(settings.WEBCHAT_TOKENS)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, **env},
        )  # fmt: skip
        return done.stdout.strip() or done.stderr.strip().splitlines()[-1]

    def test_the_seeds_variable_is_clamped_as_in_the_seed(self):
        for raw, ttl in (("1800", 1800), ("5", 60), ("999999999", 604_800), (" 90 ", 90)):
            with self.subTest(raw=raw):
                found = self.settings_in_a_process(GREENTIC_DIRECTLINE_TOKEN_TTL_SECS=raw)
                self.assertEqual(found, str({"TTL": ttl}))
        self.assertIn(
            "GREENTIC_DIRECTLINE_TOKEN_TTL_SECS='soon' is not a whole number",
            self.settings_in_a_process(GREENTIC_DIRECTLINE_TOKEN_TTL_SECS="soon"),
        )
        found = self.settings_in_a_process(WEBCHAT_TOKEN_MAX_SESSION_SECS="7200")
        self.assertEqual(found, str({"MAX_SESSION": 7200}))
