"""Signed wire on real Redis: replicas with keys deliver to each other, raw unsigned or forged
PUBLISHes are dropped as bad_signature, key rotation, keyless listeners, signed resync
requests, the metric, and ``run_backplane_listener -v 2`` / ``check`` with keys from the
environment."""

import json
import signal
import uuid

import redis
import redis.asyncio as aioredis
from django.test import SimpleTestCase

from notifier import wire
from notifier.events import NotifyEvent, watermark_message
from notifier.resync import control_channel
from notifier.runtime import Runtime
from notifier.signing import Keyring
from tests.support.processes import ManagedProcess, child_env, run_manage
from tests.support.redis_server import SHARED_URL, requires_shared_redis, unique_channel
from tests.test_backplane_metrics import scrape
from tests.test_notifier_redis import Replica, eventually, raw_messages, raw_subscriber

TIMEOUT = 5  # generous: the machine is shared; nothing here measures speed
COMMAND_TIMEOUT = 30  # a Django process starts in a second or two on a quiet machine

SECRET_1 = "k1-secret-" + "1" * 32
SECRET_0 = "k0-secret-" + "0" * 32
K1 = Keyring.from_options({"k1": SECRET_1}, "k1")
K0 = Keyring.from_options({"k0": SECRET_0}, "k0")
BOTH = Keyring.from_options({"k0": SECRET_0, "k1": SECRET_1}, "k1")
IMPOSTOR = Keyring.from_options({"k1": "not-the-secret-" + "x" * 32}, "k1")


def forged_payloads(event, instance_id):
    """Everything an attacker without the key can PUBLISH, each named."""
    good = K1.sign(wire.encode(event, instance_id), 1700000000000)
    obj = json.loads(good)

    def with_(**changes):
        return json.dumps({**obj, **changes}, separators=(",", ":")).encode()

    return {
        "unsigned": wire.encode(event, instance_id),
        "wrong key": IMPOSTOR.sign(wire.encode(event, instance_id)),
        "tampered watermark": with_(new_watermark=event.new_watermark + 1000),
        "tampered conversation": with_(conversation_id="someone-else"),
        "tampered ts": with_(ts=obj["ts"] + 1),
        "unknown kid": with_(kid="k9"),
        "kid of another accepted key": with_(kid="k0"),
        "truncated sig": with_(sig=obj["sig"][:20]),
        "sig without kid": json.dumps({k: v for k, v in obj.items() if k != "kid"}).encode(),
    }


async def replicas(channel, *keyrings):
    started = []
    for keyring in keyrings:
        started.append(await Replica(SHARED_URL, channel, signing=keyring).start())
    return started


async def close_all(items):
    for replica in items:
        await replica.aclose()


@requires_shared_redis
class SignedReplicaTests(SimpleTestCase):
    async def test_two_replicas_with_the_same_keys_deliver_signed_messages(self):
        channel = unique_channel()
        a, b = await replicas(channel, BOTH, BOTH)
        client, pubsub = await raw_subscriber(SHARED_URL, channel)
        try:
            on_a = await a.subscribe("tenant-a", "conv-1")
            on_b = await b.subscribe("tenant-a", "conv-1")
            event = NotifyEvent("tenant-a", "conv-1", 42)
            await a.notifier.apublish(event)
            self.assertEqual(await a.receive(on_a), watermark_message(event))
            self.assertEqual(await b.receive(on_b), watermark_message(event))
            [raw] = await raw_messages(pubsub, 1)
            self.assertEqual(json.loads(raw)["kid"], "k1")
            self.assertIsNone(BOTH.verify(wire.decode(raw), raw))
            # A's own message verifies, then is dropped as its echo: one local delivery.
            await eventually(lambda: a.listener.counters["self_echo"] == 1)
            with self.assertRaises(TimeoutError):
                await a.receive(on_a, timeout=0.2)
            self.assertEqual(b.listener.counters["delivered"], 1)
            self.assertEqual(b.listener.counters["bad_signature"], 0)
            self.assertEqual(b.listener.lag.count, 1)  # the signed "ts" is still read

            await b.notifier.apublish(NotifyEvent("tenant-a", "conv-1", 43))
            self.assertEqual((await a.receive(on_a))["watermark"], 43)
        finally:
            await pubsub.aclose()
            await client.aclose()
            await close_all((a, b))

    async def test_raw_unsigned_and_forged_publishes_are_dropped_as_bad_signature(self):
        channel = unique_channel()
        [replica] = await replicas(channel, BOTH)
        client = aioredis.Redis.from_url(SHARED_URL)
        try:
            local = await replica.subscribe("t", "c")
            peer = uuid.uuid4()
            forged = forged_payloads(NotifyEvent("t", "c", 5), peer)
            # A forgery claiming the replica's own id is a forgery, not a self-echo.
            forged["own id, unsigned"] = wire.encode(NotifyEvent("t", "c", 6),
                                                     replica.notifier.instance_id)
            for payload in forged.values():
                await client.publish(channel, payload)
            await client.publish(channel, b"not json")  # still malformed, checked first
            await client.publish(channel, K1.sign(wire.encode(NotifyEvent("t", "c", 7), peer)))
            self.assertEqual((await replica.receive(local))["watermark"], 7)
            counters = replica.listener.counters.snapshot()
            self.assertEqual(counters["bad_signature"], len(forged))
            self.assertEqual((counters["received"], counters["delivered"], counters["malformed"],
                              counters["self_echo"]), (len(forged) + 2, 1, 1, 0))
            with self.assertRaises(TimeoutError):
                await replica.receive(local, timeout=0.2)

            runtime = Runtime(replica.notifier)
            runtime.listener = replica.listener
            samples = scrape(runtime)
            self.assertEqual(
                samples[("webchat_backplane_dropped_total", (("reason", "bad_signature"),))],
                len(forged))
        finally:
            await client.aclose()
            await replica.aclose()

    async def test_rotation_k1_signer_reaches_k0_k1_listener_not_k0_only(self):
        channel = unique_channel()
        publisher, rotated, stale = await replicas(channel, K1, BOTH, K0)
        try:
            on_rotated = await rotated.subscribe("t", "c")
            on_stale = await stale.subscribe("t", "c")
            await publisher.notifier.apublish(NotifyEvent("t", "c", 1))
            self.assertEqual((await rotated.receive(on_rotated))["watermark"], 1)
            await eventually(lambda: stale.listener.counters["bad_signature"] == 1)
            with self.assertRaises(TimeoutError):
                await stale.receive(on_stale, timeout=0.2)
            # The listener that still signs with k0 is accepted by the rotated one too.
            await stale.notifier.apublish(NotifyEvent("t", "c", 2))
            self.assertEqual((await rotated.receive(on_rotated))["watermark"], 2)
            self.assertEqual(publisher.listener.counters["bad_signature"], 1)  # k0 unknown
        finally:
            await close_all((publisher, rotated, stale))

    async def test_keyless_listeners_deliver_signed_messages_signers_drop_unsigned_ones(self):
        channel = unique_channel()
        signer, keyless = await replicas(channel, K1, None)
        try:
            on_signer = await signer.subscribe("t", "c")
            on_keyless = await keyless.subscribe("t", "c")
            await signer.notifier.apublish(NotifyEvent("t", "c", 1))
            # kid and sig are unknown fields to a reader without keys, as to the reference.
            self.assertEqual((await keyless.receive(on_keyless))["watermark"], 1)
            await keyless.notifier.apublish(NotifyEvent("t", "c", 2))
            self.assertEqual((await signer.receive(on_signer))["watermark"], 1)
            await eventually(lambda: signer.listener.counters["bad_signature"] == 1)
            with self.assertRaises(TimeoutError):
                await signer.receive(on_signer, timeout=0.2)
        finally:
            await close_all((signer, keyless))


@requires_shared_redis
class SignedResyncRequestTests(SimpleTestCase):
    async def test_only_signed_resync_requests_make_replicas_resync(self):
        channel = unique_channel()
        a, b = await replicas(channel, BOTH, BOTH)
        client = aioredis.Redis.from_url(SHARED_URL)
        try:
            await b.subscribe("t", "c")
            resyncs = b.listener.resyncer.counters
            origin = str(a.notifier.instance_id)
            unsigned = json.dumps({"resync": True, "instance_id": origin,
                                   "reason": "lost"}).encode()
            forged = [
                unsigned,
                IMPOSTOR.sign_control(origin, "lost"),
                K0.sign_control(origin, "lost").replace(b'"lost"', b'"lust"'),
            ]
            for payload in forged:
                await client.publish(control_channel(channel), payload)
            await eventually(lambda: b.listener.counters["control_bad_signature"] == 3)
            self.assertEqual(resyncs["peer"], 0)
            # What A's sender publishes when it had to give notifications up.
            await client.publish(control_channel(channel), a.notifier.resync_request())
            await eventually(lambda: resyncs["peer"] == 1)
            await eventually(lambda: a.listener.counters["control_bad_signature"] == 3)
            self.assertEqual(a.listener.resyncer.counters["peer"], 0)  # its own request
        finally:
            await client.aclose()
            await close_all((a, b))


def signed_env(channel, **overrides):
    return child_env(**{"WEBCHAT_NOTIFIER_BACKEND": "redis", "REDIS_URL": SHARED_URL,
                        "WEBCHAT_NOTIFIER_CHANNEL": channel,
                        "WEBCHAT_NOTIFIER_SIGNING_KEYS": f"k1:{SECRET_1},k0:{SECRET_0}",
                        "WEBCHAT_NOTIFIER_SIGNING_KEY_ID": "k1", **overrides})


def is_message_line(line):
    return line.startswith(("delivered ", "dropped "))


@requires_shared_redis
class SignedListenerCommandTests(SimpleTestCase):
    def test_verbose_lines_for_signed_unsigned_and_forged_messages(self):
        channel = unique_channel()
        process = ManagedProcess.manage(self, "run_backplane_listener", "-v", "2",
                                        env=signed_env(channel))
        process.wait_for_line(lambda line: line.startswith("connected:"), COMMAND_TIMEOUT)
        client = redis.Redis.from_url(SHARED_URL)
        self.addCleanup(client.close)
        peer = uuid.uuid4()
        forged = forged_payloads(NotifyEvent("t", "c", 5), peer)
        payloads = [K0.sign(wire.encode(NotifyEvent("t", "c", 4), peer)), *forged.values(),
                    K1.sign(wire.encode(NotifyEvent("t", "c", 9), peer), 1700000000000)]
        for payload in payloads:
            self.assertEqual(client.publish(channel, payload), 1)
        lines = [process.wait_for_line(is_message_line, COMMAND_TIMEOUT) for _ in payloads]
        self.assertTrue(lines[0].startswith('delivered tenant="t" conversation="c" watermark=4 '),
                        lines[0])
        for name, line in zip(forged, lines[1:-1], strict=True):
            with self.subTest(name):
                self.assertTrue(line.startswith("dropped reason=bad_signature bytes="), line)
        self.assertTrue(lines[-1].startswith('delivered tenant="t" conversation="c" watermark=9 '),
                        lines[-1])
        self.assertEqual(process.terminate(signal.SIGTERM), 0, process.output())
        output = process.output()
        self.assertNotIn("Traceback", output)
        self.assertNotIn(SECRET_1, output)
        self.assertNotIn(SECRET_0, output)

    def test_check_fails_on_a_short_secret_without_showing_it(self):
        env = signed_env(unique_channel(), WEBCHAT_NOTIFIER_SIGNING_KEYS="k1:hunter2hunter2",
                         WEBCHAT_NOTIFIER_SIGNING_KEY_ID="")
        code, output, _ = run_manage("check", env=env)
        self.assertNotEqual(code, 0, output)
        self.assertIn("notifier.E031", output)
        self.assertIn("'k1'", output)
        self.assertNotIn("hunter2", output)
        code, output, _ = run_manage("check", env=signed_env(
            unique_channel(), WEBCHAT_NOTIFIER_SIGNING_KEY_ID="k2"))
        self.assertNotEqual(code, 0, output)
        self.assertIn("notifier.E032", output)
        self.assertNotIn(SECRET_1, output)
