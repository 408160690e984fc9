"""The development signing key: random per install, outside the repo, mode 0600, and a token
forged with the old public string (``SECRET_KEY``'s development default) is refused, in
process and by a real development replica (DEBUG on, no signing key set)."""

import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import jwt
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, TestCase, override_settings

from tests.support.replicas import Cluster, redis_unavailable
from tests.support.streams import assert_refused, communicator, stream_path
from webchat import dev_key
from webchat.consumers import CloseCode
from webchat.models import Conversation
from webchat.tokens import ALGORITHM, ISSUER, signing_key

from .directline_support import DirectLineMixin

ROOT = Path(__file__).resolve().parent.parent
#: What webchat/settings.py's development SECRET_KEY is, and what tokens were signed with.
PUBLIC_DEV_STRING = "dev-insecure-secret-key-change-me"


def forged(tenant_id, conversation_id, key=PUBLIC_DEV_STRING) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "tid": str(tenant_id), "conv": conversation_id, "user": "eve",
              "iat": now, "exp": now + 600, "ses": now, "ep": 0}  # fmt: skip
    return jwt.encode(claims, key, algorithm=ALGORITHM)


class DevKeyFileTests(SimpleTestCase):
    def setUp(self):
        self.directory = Path(tempfile.mkdtemp(prefix="webchat-dev-key-"))
        self.addCleanup(lambda: shutil.rmtree(self.directory, ignore_errors=True))
        dev_key.read_or_create.cache_clear()
        self.addCleanup(dev_key.read_or_create.cache_clear)

    def test_made_once_random_and_private(self):
        path = self.directory / "webchat" / dev_key.FILE_NAME
        key = dev_key.read_or_create(str(path))
        self.assertGreaterEqual(len(key), 64)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(path.parent.stat().st_mode), 0o700)
        dev_key.read_or_create.cache_clear()
        self.assertEqual(dev_key.read_or_create(str(path)), key)
        other = dev_key.read_or_create(str(self.directory / "other"))
        self.assertNotEqual(other, key)
        # No temporary candidates left behind.
        self.assertEqual(sorted(p.name for p in path.parent.iterdir()), [dev_key.FILE_NAME])

    def test_a_key_readable_by_others_is_refused(self):
        path = self.directory / "key"
        dev_key.read_or_create(str(path))
        dev_key.read_or_create.cache_clear()
        os.chmod(path, 0o644)
        with self.assertRaisesMessage(ImproperlyConfigured, "chmod 600"):
            dev_key.read_or_create(str(path))

    def test_the_development_settings_keep_it_outside_the_repo(self):
        if settings.WEBCHAT_TOKEN_SIGNING_KEY:
            self.skipTest("WEBCHAT_TOKEN_SIGNING_KEY is set: the dev key file is not used")
        path = Path(settings.WEBCHAT_DEV_KEY_FILE).resolve()
        self.assertFalse(path.is_relative_to(ROOT), path)
        self.assertNotEqual(signing_key(), settings.SECRET_KEY)


class ForgedWithThePublicStringTests(DirectLineMixin, TestCase):
    """The attack of issue 13: a token signed with the public development string for another
    tenant's conversation. Refused, on REST and on the stream."""

    def setUp(self):
        directory = Path(tempfile.mkdtemp(prefix="webchat-dev-key-"))
        dev_key.read_or_create.cache_clear()
        override = override_settings(
            WEBCHAT_TOKEN_SIGNING_KEY=None,
            WEBCHAT_DEV_KEY_FILE=str(directory / "key"),
            SECRET_KEY=PUBLIC_DEV_STRING,
        )
        override.enable()
        self.addCleanup(override.disable)
        self.addCleanup(dev_key.read_or_create.cache_clear)
        super().setUp()
        self.victim = Conversation.objects.create(tenant=self.other_tenant)

    def test_refused_over_rest(self):
        token = forged(self.other_tenant.pk, self.victim.id)
        path = f"/conversations/{self.victim.id}"
        for response in (
            self.get(path, token),
            self.get(path + "/activities", token),
            self.post_json(path + "/activities", {"type": "message"}, token),
            self.post_json("/tokens/refresh", None, token),
        ):
            self.assertDirectLineError(response, 403, "BadArgument")
        self.assertEqual(self.activity_count(), 0)
        # The install's own key still works.
        fresh = self.post_json("/tokens/generate", {}, self.other_secret).json()["token"]
        self.assertEqual(self.post_json("/tokens/refresh", None, fresh).status_code, 200)

    def test_refused_on_the_stream(self):
        path = stream_path(self.victim.id, forged(self.other_tenant.pk, self.victim.id))

        async def connect():
            with self.assertLogs("webchat.consumers", "INFO"):
                await assert_refused(self, communicator(path), CloseCode.UNAUTHORIZED)

        async_to_sync(connect)()


class DevelopmentReplicaTests(SimpleTestCase):
    """A real development instance: daphne with DEBUG on and no signing key, its dev key in a
    private data directory."""

    def test_a_token_forged_with_the_public_string_is_refused(self):
        problem = redis_unavailable()
        if problem:
            raise AssertionError(f"this test needs Redis: {problem}")
        data_home = Path(tempfile.mkdtemp(prefix="webchat-xdg-"))
        self.addCleanup(lambda: shutil.rmtree(data_home, ignore_errors=True))
        cluster = Cluster(
            database="sqlite",
            extra_env={
                "DEBUG": "1",
                "WEBCHAT_TOKEN_SIGNING_KEY": "",
                "XDG_DATA_HOME": str(data_home),
            },
        ).start(1)
        self.addCleanup(cluster.stop)
        secret = cluster.create_tenant("victim")
        status, generated = cluster.http(0, "POST", "/v3/directline/tokens/generate", {},
                                         secret=secret)  # fmt: skip
        self.assertEqual(status, 200, generated)
        key_file = data_home / "webchat" / dev_key.FILE_NAME
        self.assertEqual(stat.S_IMODE(key_file.stat().st_mode), 0o600)
        key = key_file.read_text().strip()
        jwt.decode(generated["token"], key, algorithms=[ALGORITHM], issuer=ISSUER)

        claims = jwt.decode(generated["token"], options={"verify_signature": False})
        conversation = generated["conversationId"]
        status, body = cluster.http(
            0, "GET", f"/v3/directline/conversations/{conversation}/activities",
            token=forged(claims["tid"], conversation),
        )  # fmt: skip
        self.assertEqual(status, 403, body)
        self.assertEqual(body["error"]["code"], "BadArgument")
