"""Readiness (``notifier.health``): hysteresis, shared trouble (degraded) against local trouble
(unready), the settings that choose, bounded logs under a flood of bad messages, a resync
request retried on its own, and a catch-up sweep that keeps failing.

Real Redis (a private ``redis-server`` where a test kills clients or changes ACLs); the
classification table runs on real listener and probe objects whose state is set by hand."""

import asyncio
import json
import logging
import time
import uuid
from unittest import mock

from asgiref.sync import sync_to_async
from django.core.checks import run_checks
from django.test import SimpleTestCase, TestCase, override_settings
from redis.exceptions import ConnectionError as RedisConnectionError

from notifier import oplog
from notifier.backends.redis import RedisNotifier
from notifier.control import encode_resync_request
from notifier.dispatch import MALFORMED, MAX_PAYLOAD, classify
from notifier.exceptions import BackplanePermissionDenied
from notifier.health import DEGRADED, UNREADY, Hysteresis, backplane_status, problems
from notifier.layers import LocalChannelLayer
from notifier.listener import Listener
from notifier.outbound import AsyncSender
from notifier.probe import Probe, ProbeOverdue, probe_channel
from notifier.resync import control_channel
from notifier.runtime import Runtime
from notifier.stats import LoopCounters
from notifier.transport import transport_for_url
from tests.support.redis_server import RedisServer, requires_redis_server, unique_channel
from tests.support.streams import communicator, make_conversation, stream_path, token_for
from tests.support.tcp_proxy import TcpProxy
from tests.test_backplane_probe import close_runtime, started_runtime
from tests.test_notifier_redis import eventually
from webchat import catch_up as catch_up_module
from webchat.catch_up import catch_up
from webchat.ops import readiness

TIMEOUT = 10  # generous: the machine is shared


class Records(logging.Handler):
    """Every record of the named loggers, DEBUG included, while inside ``with``."""

    def __init__(self, *names):
        super().__init__(logging.DEBUG)
        self.loggers = [logging.getLogger(name) for name in names]
        self.records = []
        self._levels = []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        for logger in self.loggers:
            self._levels.append(logger.level)
            logger.setLevel(logging.DEBUG)
            logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        for logger, level in zip(self.loggers, self._levels, strict=True):
            logger.removeHandler(self)
            logger.setLevel(level)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class HysteresisTests(SimpleTestCase):
    def test_a_blip_shorter_than_bad_after_never_shows(self):
        clock = Clock()
        held = Hysteresis(5, 2, clock)
        self.assertFalse(held.update(False))
        clock.now += 1
        self.assertFalse(held.update(True))  # a reconnect
        clock.now += 4.9
        self.assertFalse(held.update(True))
        clock.now += 0.1
        self.assertFalse(held.update(False))  # over after 5 s: never shown
        clock.now += 4.9
        self.assertFalse(held.update(True))  # a new episode counts from its own start
        clock.now += 5
        self.assertTrue(held.update(True))

    def test_a_known_start_counts_from_there_and_green_needs_good_after(self):
        clock = Clock()
        held = Hysteresis(5, 2, clock)
        held.update(False)
        clock.now += 10
        self.assertTrue(held.update(True, since=clock.now - 6))  # began 6 s ago
        clock.now += 1
        self.assertTrue(held.update(False))
        clock.now += 1.9
        self.assertTrue(held.update(False))
        self.assertAlmostEqual(held.healthy_for(), 1.9)
        clock.now += 0.1
        self.assertFalse(held.update(False))
        clock.now += 0.5
        self.assertFalse(held.update(True))  # a blip after recovering: held green again

    def test_until_first_healthy_the_raw_verdict_is_answered(self):
        clock = Clock()
        held = Hysteresis(5, 2, clock)
        self.assertTrue(held.update(True))  # a fresh process that never worked
        clock.now += 0.1
        self.assertFalse(held.update(False))  # the first success counts at once
        clock.now += 0.1
        self.assertFalse(held.update(True))


class Failing:
    """A notifier whose sender has failed since ``since`` (for :func:`problems`)."""

    def __init__(self, since=None, error=None):
        self.failing = None if since is None else (since, error)

    def publish_failing(self):
        return self.failing


class ClassificationTests(SimpleTestCase):
    """Shared trouble (every replica sees it) is DEGRADED, local trouble UNREADY."""

    def setUp(self):
        notifier = RedisNotifier("redis://127.0.0.1:1/0", channel=unique_channel())
        self.listener = notifier.listener()
        self.probe = self.listener.probe
        self.probe.started_at = time.monotonic() - 30

    def connected(self):
        self.listener.state = "connected"
        self.listener.down_since = None

    def answering(self, yes=True):
        self.probe.counters.incr("sent")
        self.probe.last_error = None if yes else TimeoutError("Timeout reading from socket")

    def levels(self, notifier=None):
        return [p.level for p in problems(self.listener, notifier or Failing())]

    def test_redis_unreachable_is_shared(self):
        self.listener.state, self.listener.attempt = "reconnecting", 3
        self.listener.down_since = time.monotonic() - 10
        self.listener.last_error = self.listener.last_loss = ConnectionRefusedError(111, "no")
        self.answering(False)
        self.assertEqual(self.levels(Failing(time.monotonic() - 9, ConnectionError("no"))),
                         [DEGRADED, DEGRADED])

    def test_redis_dropping_its_subscribers_is_shared(self):
        # A flood over client-output-buffer-limit pubsub, CLIENT KILL, a restart: Redis
        # answers our PUBLISHes and closes every subscriber alike.
        self.connected()
        self.listener.last_loss = RedisConnectionError("Connection closed by server.")
        self.answering()
        self.probe.last_ok = time.monotonic() - 8
        [problem] = problems(self.listener, Failing())
        self.assertEqual(problem.level, DEGRADED)
        self.assertEqual(problem.since, self.probe.last_ok)

    def test_a_silent_subscriber_while_redis_answers_is_local(self):
        self.connected()
        self.listener.last_loss = ProbeOverdue("a probe did not come back within 2 s")
        self.answering()
        self.probe.last_ok = time.monotonic() - 8
        [problem] = problems(self.listener, Failing())
        self.assertEqual(problem.level, UNREADY)
        self.assertIn("subscriber connection went silent", problem.reason)

    def test_a_subscribe_that_times_out_while_redis_answers_is_local(self):
        self.listener.state, self.listener.attempt = "reconnecting", 2
        self.listener.down_since = time.monotonic() - 6
        self.listener.last_error = self.listener.last_loss = TimeoutError("SUBSCRIBE")
        self.answering()
        self.assertEqual(self.levels(), [UNREADY])
        self.answering(False)  # Redis silent for our PUBLISHes too: everyone's trouble
        self.assertEqual(self.levels(), [DEGRADED])

    def test_a_refusal_is_local_even_when_every_replica_shares_it(self):
        self.listener.state, self.listener.attempt = "reconnecting", 4
        self.listener.down_since = time.monotonic() - 6
        refused = BackplanePermissionDenied(
            "user 'webchat' lacks permission for the SUBSCRIBE command",
            hint="grant it: ACL SETUSER webchat +subscribe")
        self.listener.last_error = self.listener.last_loss = refused
        self.answering(False)
        self.assertEqual(self.levels(), [UNREADY])

    def test_failing_publishes_while_redis_answers_the_probe_are_local(self):
        self.connected()
        self.answering()
        self.probe.last_ok = time.monotonic()
        self.assertEqual(self.levels(Failing(time.monotonic() - 6, PermissionError("NOPERM"))),
                         [UNREADY])

    def test_a_twin_is_local_at_once(self):
        self.connected()
        self.answering()
        self.probe.last_ok = self.probe.duplicate_seen = time.monotonic()
        [problem] = problems(self.listener, Failing())
        self.assertEqual((problem.level, problem.since), (UNREADY, float("-inf")))


class OversizedTests(SimpleTestCase):
    def test_a_payload_over_the_limit_is_malformed_undecoded(self):
        sender = uuid.uuid4()
        valid = json.dumps({"tenant_id": "t", "conversation_id": "c", "new_watermark": 1,
                            "version": 1, "instance_id": str(sender)}).encode()
        padded = b" " * (MAX_PAYLOAD - len(valid)) + valid  # JSON allows the whitespace
        self.assertIsNotNone(classify(padded, uuid.uuid4())[0])
        message, reason, detail = classify(b" " + padded, uuid.uuid4())
        self.assertEqual((message, reason), (None, MALFORMED))
        self.assertEqual(str(detail), f"{MAX_PAYLOAD + 1} bytes, over the {MAX_PAYLOAD}-byte "
                                      "limit")


class SettingsTests(SimpleTestCase):
    def ids(self, **options):
        with override_settings(BACKPLANE={"BACKEND": "memory", **options},
                               WEBCHAT_NOTIFIER=None):
            return [m.id for m in run_checks(tags=["notifier"]) if m.id.startswith("notifier.")]

    def test_readiness_and_its_delays_are_checked(self):
        self.assertEqual(self.ids(), [])
        self.assertEqual(self.ids(READINESS="strict", UNREADY_AFTER=0, READY_AFTER=30.5), [])
        self.assertEqual(self.ids(READINESS="lenient"), ["notifier.E060"])
        self.assertEqual(self.ids(UNREADY_AFTER="5"), ["notifier.E061"])
        self.assertEqual(self.ids(READY_AFTER=-1), ["notifier.E061"])
        self.assertEqual(self.ids(UNREADY_AFTER=True), ["notifier.E061"])


@requires_redis_server
class BlipTests(SimpleTestCase):
    async def test_client_kill_of_the_subscriber_does_not_flip_even_strict_readiness(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        admin = server.client()
        self.addCleanup(admin.close)
        runtime = await started_runtime(server.url)
        listener = runtime.listener
        try:
            with override_settings(BACKPLANE={"READINESS": "strict"}):
                await eventually(lambda: backplane_status(runtime)["state"] == "ok", TIMEOUT)
                states = []
                for _ in range(3):
                    await asyncio.to_thread(admin.execute_command, "CLIENT", "KILL", "TYPE",
                                            "pubsub")
                    started = time.monotonic()
                    while time.monotonic() - started < 1.0:
                        states.append(backplane_status(runtime)["state"])
                        await asyncio.sleep(0.01)
            self.assertGreaterEqual(listener.counters["connects"], 4)  # each kill was felt
            self.assertGreater(len(states), 100)
            self.assertEqual(set(states), {"ok"})
        finally:
            await close_runtime(runtime)


@requires_redis_server
class LocalWedgeTests(SimpleTestCase):
    async def test_a_subscriber_that_goes_silent_while_redis_answers_us_turns_readiness_red(
        self,
    ):
        # Our PUBLISHes (probe, sender) go straight to Redis; the subscriber's connection goes
        # through a proxy that freezes every connection once it is 30 ms old: the listener
        # subscribes, hears nothing, leaves, again and again, while Redis answers us. Peers
        # would hear the channel: this replica is worse off, so it is red.
        server = await asyncio.to_thread(RedisServer.start_for, self)
        proxy = await TcpProxy.start(server.port)
        notifier = RedisNotifier(server.url, channel=unique_channel(),
                                 channel_layer=LocalChannelLayer())
        await notifier.astart()
        runtime = Runtime(notifier)
        runtime.listener = listener = Listener(
            transport_for_url(f"redis://127.0.0.1:{proxy.port}/0", connect_timeout=2.0),
            channel=notifier.channel, instance_id=notifier.instance_id,
            deliver=notifier.local_send,
            probe=Probe(notifier.transport, probe_channel(notifier.channel,
                                                          notifier.instance_id)))
        listener.start()
        freezing = asyncio.Event()

        async def freezer():
            await freezing.wait()
            while freezing.is_set():
                proxy.freeze(older_than=0.03)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(freezer())
        try:
            await eventually(lambda: backplane_status(runtime)["state"] == "ok", TIMEOUT)
            freezing.set()
            frozen_at = time.monotonic()
            await eventually(lambda: not backplane_status(runtime)["ok"], 15)
            red_after = time.monotonic() - frozen_at
            status = backplane_status(runtime)
            self.assertEqual(status["state"], "unready", status)
            self.assertIn("subscriber connection went silent", status["reason"])
            self.assertGreaterEqual(listener.counters["disconnects"], 1)
            freezing.clear()
            await eventually(lambda: backplane_status(runtime)["state"] == "ok", 15)
            logging.getLogger(__name__).info(
                "measured: silent subscriber with Redis answering: red %.2f s after the "
                "freezing began", red_after)
        finally:
            freezing.clear()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await close_runtime(runtime)
            await proxy.aclose()


def unknown_version(n):
    return json.dumps({"tenant_id": "t", "conversation_id": f"c{n}", "new_watermark": n,
                       "version": 2, "instance_id": str(uuid.uuid4())},
                      separators=(",", ":")).encode()


@requires_redis_server
class LogFloodTests(SimpleTestCase):
    async def test_a_flood_of_bad_messages_logs_a_bounded_number_of_lines(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        runtime = await started_runtime(server.url)
        listener = runtime.listener
        layer = runtime.notifier.channel_layer
        member = await layer.new_channel()
        await layer.group_add("webchat.wm.flooded", member)  # a resync pass has a group
        flood, oversized = 1500, 3
        peer = uuid.uuid4()
        try:
            await listener.wait_connected(TIMEOUT)
            publisher = server.client()
            self.addCleanup(publisher.close)

            def publish():
                pipe = publisher.pipeline(transaction=False)
                for n in range(flood):
                    pipe.publish(listener.channel, b"not json %d" % n)
                    pipe.publish(listener.channel, unknown_version(n))
                    if n < oversized:  # few: Redis's pub/sub output buffer limit
                        pipe.publish(listener.channel, b" " * MAX_PAYLOAD + unknown_version(n))
                    pipe.publish(listener.control_channel, b"garbage %d" % n)
                    pipe.publish(control_channel(listener.channel),
                                 encode_resync_request(peer, "lost"))
                pipe.execute()

            started = time.monotonic()
            with (mock.patch.object(oplog, "_limiter", oplog.RateLimiter()),
                  mock.patch.object(oplog, "_lines", oplog.RateLimiter()),
                  Records("notifier.listener", "notifier.resync", oplog.LOGGER_NAME) as logs):
                await asyncio.to_thread(publish)
                await eventually(
                    lambda: listener.counters["received"] >= 2 * flood + oversized, TIMEOUT)
                await eventually(lambda: listener.counters["peer_resyncs"] >= flood, TIMEOUT)
                await listener.resyncer.wait()
            elapsed = time.monotonic() - started
            counters = listener.counters
            self.assertEqual((counters["malformed"], counters["unknown_version"]),
                             (flood + oversized, flood))
            self.assertEqual(listener.counters["disconnects"], 0)  # nothing was lost
            flood_lines = logs.records
            logger_counts = {}
            for record in flood_lines:
                logger_counts[record.name] = logger_counts.get(record.name, 0) + 1
            logging.getLogger(__name__).info(
                "measured: %d bad messages and %d peer resync requests logged %d lines %s",
                3 * flood + oversized, flood, len(flood_lines), logger_counts)
            # One line per kind per 10 s: decode error, unknown version, dropped (debug) by
            # reason (2), malformed control, peer resync, resync pass.
            bound = 7 * (1 + int(elapsed // oplog.INTERVAL))
            self.assertLessEqual(len(flood_lines), bound, [r.getMessage() for r in flood_lines])
            self.assertGreaterEqual(len(flood_lines), 5)
        finally:
            await close_runtime(runtime)


@requires_redis_server
class ResyncRequestRetryTests(SimpleTestCase):
    async def test_a_failed_batch_holding_only_the_resync_request_is_retried_alone(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        admin = server.client()
        self.addCleanup(admin.close)
        channel = unique_channel()
        # May PUBLISH notifications, not resync requests (the control channel): NOPERM.
        await asyncio.to_thread(admin.execute_command, "ACL", "SETUSER", "sender", "on",
                                ">secret", "~*", "resetchannels", f"&{channel}", "+@all")
        transport = transport_for_url(f"redis://sender:secret@127.0.0.1:{server.port}/0")
        counters = LoopCounters("mirrored", "mirror_failures", "mirror_dropped",
                                "mirror_superseded", "resync_requests")
        sender = AsyncSender(transport, channel, capacity=256, counters=counters,
                             resync_request=encode_resync_request(uuid.uuid4()))
        watcher = admin.pubsub()
        self.addCleanup(watcher.close)
        await asyncio.to_thread(watcher.subscribe, control_channel(channel))
        sender.start()
        try:
            # One more than the capacity, all queued before the task runs: the oldest is
            # given up, and the resync request no longer fits in the first batch.
            for n in range(257):
                sender.put_nowait(((f"t{n}", "c"), b"%d" % n))
            await eventually(lambda: counters["mirrored"] == 256 and sender.failing_since,
                             TIMEOUT)
            self.assertEqual(counters["resync_requests"], 0)
            # Allowed now. No publish follows: the retry alone must send it.
            await asyncio.to_thread(admin.execute_command, "ACL", "SETUSER", "sender",
                                    "allchannels")
            await eventually(lambda: counters["resync_requests"] == 1, TIMEOUT)
            self.assertIsNone(sender.failing_since)
            message = None
            deadline = time.monotonic() + TIMEOUT
            while message is None or message["type"] != "message":
                self.assertLess(time.monotonic(), deadline)
                message = await asyncio.to_thread(watcher.get_message, timeout=1.0)
            self.assertEqual(message["channel"], control_channel(channel).encode())
        finally:
            await sender.aclose()


@override_settings(WEBCHAT_STREAM={"CATCH_UP_INTERVAL": 0.1},
                   BACKPLANE={"UNREADY_AFTER": 0.5, "READY_AFTER": 0.2})
class FailingSweepTests(TestCase):
    async def test_a_sweep_that_keeps_failing_turns_readiness_red_until_it_works(self):
        conversation = await sync_to_async(make_conversation)()
        comm = communicator(stream_path(conversation.id, token_for(conversation), 0))
        connected, _ = await comm.connect()
        self.assertTrue(connected)
        try:
            ready, body = await readiness()
            self.assertTrue(ready, body)
            bug = mock.patch.object(catch_up_module, "watermarks",
                                    side_effect=TypeError("a bug, not the database"))
            with bug, self.assertLogs("webchat.catch_up", "WARNING") as logs:
                async with asyncio.timeout(TIMEOUT):
                    while (await readiness())[0]:
                        await asyncio.sleep(0.05)
                ready, body = await readiness()
            self.assertFalse(ready)
            self.assertTrue(body["checks"]["database"]["ok"])
            [problem] = body["problems"]
            self.assertRegex(problem, r"^catch_up: every catch-up sweep has failed for "
                                      r"[0-9.]+ s \([0-9]+ in a row; last: TypeError: a bug")
            # The traceback is logged once per run of failures, not at every sweep.
            self.assertEqual(sum(bool(r.exc_info) for r in logs.records), 1)
            self.assertGreaterEqual(len(logs.records), 2)
            async with asyncio.timeout(TIMEOUT):
                while not (await readiness())[0]:
                    await asyncio.sleep(0.05)
            self.assertEqual(catch_up.failures, 0)
        finally:
            await comm.disconnect()
