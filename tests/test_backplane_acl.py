"""A least-privilege ACL user (README, "ACL user") on a private ``redis-server``: the recipe
carries the backplane end to end; strict startup refuses to start naming each missing
permission (E011, E013); a permission revoked at runtime backs off, turns /readyz red naming
it, and recovers once granted back. No password ever shows."""

import asyncio
import json
import logging
import re
import subprocess
import uuid
from pathlib import Path

import redis
from django.test import SimpleTestCase, override_settings

from notifier.asgi import BackplaneMiddleware
from notifier.checks import check_connection
from notifier.conf import get_settings
from notifier.exceptions import BackplaneAuthenticationFailed, BackplanePermissionDenied
from notifier.runtime import get_runtime
from tests.support.backplane import TIMEOUT, assert_crosses, notifier_pair
from tests.support.processes import PYTHON, ROOT, child_env
from tests.support.redis_server import RedisServer, free_port, requires_redis_server
from tests.test_ops_endpoints import MONITOR, MONITOR_TOKEN, call, inner_app
from webchat.ops import OpsEndpoints

README = Path(__file__).resolve().parents[1] / "README.md"
DEFAULT_CHANNEL = "greentic:webchat:notify"
PASSWORD = "acl-pass-" + uuid.uuid4().hex


def readme_recipe():
    """The ``ACL SETUSER webchat ...`` line of the README, as a list of words."""
    match = re.search(r"^ACL SETUSER webchat (.+)$", README.read_text(), re.MULTILINE)
    return match.group(1).split()


def recipe_for(channel, *, without=()):
    """The README's rules for ``channel`` and this test's password, minus ``without``."""
    rules = [rule.replace(DEFAULT_CHANNEL, channel) for rule in readme_recipe()]
    rules = [f">{PASSWORD}" if rule == ">CHANGE-ME" else rule for rule in rules]
    missing = [rule for rule in without if rule not in rules]
    if missing:
        raise AssertionError(f"the README recipe has no {missing}")
    return [rule for rule in rules if rule not in without]


@requires_redis_server
class ACLTestCase(SimpleTestCase):
    databases = {"default"}  # /readyz asks the database too

    def setUp(self):
        self.server = RedisServer.start_for(self)
        self.admin = self.server.client(decode_responses=True)
        self.addCleanup(self.admin.close)
        self.channel = f"test:acl:{uuid.uuid4()}"
        self.url = f"redis://webchat:{PASSWORD}@127.0.0.1:{self.server.port}/0"

    def setuser(self, *rules):
        self.admin.execute_command("ACL", "SETUSER", "webchat", *rules)

    def settings(self, url=None):
        return override_settings(WEBCHAT_NOTIFIER=None, BACKPLANE={
            "BACKEND": "redis", "URL": url or self.url, "CHANNEL": self.channel})

    def denials(self):
        return [(entry["reason"], entry["object"]) for entry in
                self.admin.execute_command("ACL", "LOG")]


class RecipeTests(ACLTestCase):
    @override_settings(WEBCHAT_METRICS={"TOKEN": MONITOR_TOKEN})
    async def test_the_readme_recipe_carries_the_backplane_end_to_end(self):
        await asyncio.to_thread(self.setuser, *recipe_for(self.channel))
        with self.settings():
            self.assertEqual(await asyncio.to_thread(check_connection), [])
            receiver, publisher = notifier_pair(get_settings())
            await assert_crosses(self, receiver, publisher)
            app = BackplaneMiddleware(OpsEndpoints(inner_app))
            try:
                status, _, body = await call(app, "/readyz", headers=MONITOR)
                _, _, metrics = await call(app, "/metrics", headers=MONITOR)
            finally:
                await get_runtime().aclose()
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["checks"]["backplane"]["listener"], "connected")
        self.assertNotIn(PASSWORD.encode(), body + metrics)
        # Nothing the backplane did was refused (CLIENT SETINFO included).
        self.assertEqual(await asyncio.to_thread(self.denials), [])


class StrictStartupTests(ACLTestCase):
    def refused(self, exception_class, url=None):
        with self.settings(url):
            notifier, _ = notifier_pair(get_settings())
            with self.assertRaises(exception_class) as caught:
                notifier.verify(TIMEOUT)
            messages = check_connection()
        self.assertEqual([m.id for m in messages], [exception_class.check_id])
        message = str(caught.exception)
        # The same words (strict startup's probe channel is fresh each time).
        fresh = re.compile(r"startup-[0-9a-f-]+")
        self.assertEqual(fresh.sub("startup-", messages[0].msg), fresh.sub("startup-", message))
        self.assertNotIn(PASSWORD, message)
        self.assertIn(f"redis://webchat:***@127.0.0.1:{self.server.port}/0", message)
        return message

    def test_each_missing_permission_is_named_with_its_grant(self):
        channel = self.channel
        cases = (
            ("+subscribe", "lacks permission for the SUBSCRIBE command",
             "ACL SETUSER webchat +subscribe"),
            ("+publish", "lacks permission for the PUBLISH command",
             "ACL SETUSER webchat +publish"),
            ("+client|setname", "lacks permission for the CLIENT SETNAME command",
             "ACL SETUSER webchat +client|setname"),
            ("+ping", "lacks permission for the PING command", "ACL SETUSER webchat +ping"),
            (f"&{channel}", f"lacks permission for SUBSCRIBE on channel '{channel}'",
             f"ACL SETUSER webchat &{channel}"),
            (f"&{channel}:resync", f"SUBSCRIBE on channel '{channel}:resync'",
             f"ACL SETUSER webchat &{channel}:resync"),
            (f"&{channel}:probe:*", f"SUBSCRIBE on channel '{channel}:probe:startup-",
             f"ACL SETUSER webchat &{channel}:probe:startup-"),
        )
        for rule, problem, grant in cases:
            with self.subTest(without=rule):
                self.setuser(*recipe_for(channel, without=[rule]))
                message = self.refused(BackplanePermissionDenied)
                self.assertIn(f"user 'webchat' {problem}" if problem.startswith("lacks")
                              else problem, message)
                self.assertIn(grant, message)
        # Nothing was PUBLISHed on the global or resync channel to find out.
        self.setuser(*recipe_for(channel))
        with self.settings():
            self.assertEqual(check_connection(), [])

    def test_a_wrong_password_or_disabled_user_is_an_authentication_failure(self):
        self.setuser(*recipe_for(self.channel))
        wrong = self.url.replace(PASSWORD, "not-the-password")
        message = self.refused(BackplaneAuthenticationFailed, wrong)
        self.assertIn("authentication failed for user 'webchat'", message)
        self.assertIn("check the password", message)
        self.setuser("off")
        self.assertIn("authentication failed", self.refused(BackplaneAuthenticationFailed))

    def test_the_server_process_refuses_to_start_naming_the_permission(self):
        self.setuser(*recipe_for(self.channel, without=["+publish"]))
        env = child_env(WEBCHAT_NOTIFIER_BACKEND="redis", REDIS_URL=self.url,
                        WEBCHAT_NOTIFIER_CHANNEL=self.channel)
        daphne = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(free_port()),
                  "webchat.asgi:application"]
        for command in (["manage.py", "check"], ["manage.py", "run_backplane_listener",
                                                 "--check"], daphne):
            with self.subTest(command=command):
                done = subprocess.run([PYTHON, *command], cwd=ROOT, env=env,
                                      capture_output=True, text=True, timeout=60)
                output = done.stdout + done.stderr
                self.assertNotEqual(done.returncode, 0, output)
                self.assertIn("user 'webchat' lacks permission for the PUBLISH command", output)
                self.assertIn("grant it: ACL SETUSER webchat +publish", output)
                self.assertNotIn(PASSWORD, output)


@override_settings(WEBCHAT_METRICS={"TOKEN": MONITOR_TOKEN})
class RevokedAtRuntimeTests(ACLTestCase):
    async def readyz(self, app):
        status, _, body = await call(app, "/readyz", headers=MONITOR)
        self.assertNotIn(PASSWORD.encode(), body)
        return status, json.loads(body)

    async def wait_readyz(self, app, expected, timeout):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status, body = await self.readyz(app)
            if status == expected or asyncio.get_running_loop().time() > deadline:
                return status, body
            await asyncio.sleep(0.1)

    async def test_revoked_subscribe_backs_off_turns_readyz_red_and_recovers(self):
        await asyncio.to_thread(self.setuser, *recipe_for(self.channel))
        with self.settings(), self.assertLogs(level=logging.DEBUG) as logs:
            app = BackplaneMiddleware(OpsEndpoints(inner_app))
            try:
                status, body = await self.wait_readyz(app, 200, TIMEOUT)
                self.assertEqual(status, 200, body)
                listener = get_runtime().listener

                await asyncio.to_thread(self.setuser, "-subscribe")
                await asyncio.to_thread(self.admin.execute_command, "CLIENT", "KILL",
                                        "USER", "webchat")
                status, body = await self.wait_readyz(app, 503, TIMEOUT)
                self.assertEqual(status, 503, body)
                failures_before = listener.counters["reconnect_failures"]
                await asyncio.sleep(3.0)  # while it lasts: backoff, not a restart loop
                status, body = await self.readyz(app)
                self.assertEqual(status, 503, body)
                [problem] = body["problems"]
                self.assertIn("BackplanePermissionDenied: user 'webchat' lacks permission for "
                              "the SUBSCRIBE command", problem)
                self.assertIn("grant it: ACL SETUSER webchat +subscribe", problem)
                self.assertIsInstance(listener.last_error, BackplanePermissionDenied)
                self.assertEqual(listener.counters["errors"], 0)  # never the restart path
                # The backoff's delays grew (100, 250, 500, 1000, 2000 ms ... ±20 %; the
                # probe may cut one short): the next one is over a second, where the
                # restart path retried every 0.5 s.
                self.assertGreaterEqual(listener.backoff.attempt, 4)
                self.assertLessEqual(listener.counters["reconnect_failures"] - failures_before,
                                     6)

                await asyncio.to_thread(self.setuser, "+subscribe")
                # The backoff's longest step is 5 s (+20 %), then one probe round trip.
                status, body = await self.wait_readyz(app, 200, 8.0)
                self.assertEqual(status, 200, body)
                self.assertEqual(listener.state, "connected")
            finally:
                await get_runtime().aclose()
        text = "\n".join(record.getMessage() for record in logs.records)
        self.assertNotIn(PASSWORD, text)
        errors = [r for r in logs.records
                  if r.levelno >= logging.ERROR and r.name == "notifier.listener"]
        self.assertEqual(len(errors), 1, text)  # once a minute while it lasts
        self.assertIn("lacks permission for the SUBSCRIBE command", errors[0].getMessage())
        self.assertIsNone(errors[0].exc_info)
        self.assertNotIn("restarting", text)

    async def test_a_wrong_password_is_named_and_retried_with_backoff(self):
        await asyncio.to_thread(self.setuser, *recipe_for(self.channel))
        wrong = self.url.replace(PASSWORD, "not-the-password")
        with self.settings(wrong):
            notifier, _ = notifier_pair(get_settings())
        listener = notifier.listener(resync=False)
        with self.assertLogs("notifier.listener", logging.INFO) as logs:
            listener.start()
            await asyncio.sleep(2.0)
            await listener.aclose()
        self.assertIsInstance(listener.last_error, BackplaneAuthenticationFailed)
        self.assertEqual(listener.counters["errors"], 0)
        self.assertLessEqual(listener.counters["reconnect_failures"], 5)
        [error] = [r for r in logs.records if r.levelno >= logging.ERROR]
        self.assertIn("authentication failed for user 'webchat' at redis://webchat:***@",
                      error.getMessage())
        self.assertNotIn("cannot reach", "\n".join(r.getMessage() for r in logs.records))

    async def test_a_revoked_channel_is_named_and_recovers(self):
        channel = self.channel
        await asyncio.to_thread(self.setuser, *recipe_for(channel))
        with self.settings():
            notifier, _ = notifier_pair(get_settings())
        listener = notifier.listener(resync=False)
        listener.start()
        try:
            await listener.wait_connected(TIMEOUT)
            # Redis itself disconnects a subscriber from channels its user lost.
            await asyncio.to_thread(self.setuser, "resetchannels", f"&{channel}",
                                    f"&{channel}:probe:*")
            async with asyncio.timeout(TIMEOUT):
                while not isinstance(listener.last_error, BackplanePermissionDenied):
                    await asyncio.sleep(0.02)
            message = str(listener.last_error)
            self.assertIn("lacks permission for SUBSCRIBE on one of the channels "
                          f"'{channel}', '{channel}:resync'", message)
            self.assertIn(f"&{channel}:resync", message)
            await asyncio.to_thread(self.setuser, f"&{channel}:resync")
            await listener.wait_connected(8.0)  # the backoff's longest step is 5 s (+20 %)
            self.assertEqual(listener.counters["errors"], 0)
        finally:
            await listener.aclose()


@requires_redis_server
class SentinelACLTests(SimpleTestCase):
    """redis+sentinel:// with the recipe's user on the master: the README's ``+role``."""

    def test_the_recipe_plus_role_passes_and_without_role_is_named(self):
        from tests.support.sentinel import SentinelDeployment

        deployment = SentinelDeployment.start_for(self)
        channel = f"test:acl:{uuid.uuid4()}"
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in deployment.sentinels)
        url = f"redis+sentinel://webchat:{PASSWORD}@{hosts}/{deployment.service}/0"
        settings = override_settings(WEBCHAT_NOTIFIER=None, BACKPLANE={
            "BACKEND": "redis", "URL": url, "CHANNEL": channel})
        with redis.Redis(port=deployment.master_port()) as master:
            master.execute_command("ACL", "SETUSER", "webchat", *recipe_for(channel))
            with settings:
                [error] = check_connection()
            self.assertEqual(error.id, "notifier.E013")
            self.assertIn("user 'webchat' lacks permission for the ROLE command", error.msg)
            self.assertIn("grant it: ACL SETUSER webchat +role", error.msg)
            self.assertNotIn(PASSWORD, error.msg)
            master.execute_command("ACL", "SETUSER", "webchat", "+role")
            with settings:
                self.assertEqual(check_connection(), [])
