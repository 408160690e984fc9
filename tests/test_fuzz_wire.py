"""The wire decoder and the backplane listener under generated input (hypothesis).

Decoder, pure functions (about 17,000 generated payloads per run):

* 2,000 shapes x 5 renderings = 10,000 structured payloads, each checked against the
  independent model of ``tests/support/wire_fuzz.py``: delivered with exactly the event it
  carries, or dropped for exactly the reason it must be;
* 3,000 arbitrary byte strings and 1,000 UTF-8 texts, and 600 x 5 = 3,000 byte-level
  mutations of deliverable payloads: ``decode`` returns a sane message or raises
  ``MalformedPayload``, never anything else, and what it accepts Python's lenient ``json``
  reads the same way and re-encodes to the same message;
* explicit corners: 100,000 nested arrays, a 1 MiB id, a 100,000-digit integer, 10,000
  members, each where the reference would have it.

Listener, through a private ``redis-server`` (3,000 generated payloads + the corners,
PUBLISHed raw): it never dies or reconnects, every payload is delivered or dropped with a
reason in the order published (the counters add up exactly to the number published), the
delivered events reach the channel layer, and a valid message afterwards is still delivered.
"""

import asyncio
import threading
import time
import uuid

from django.test import SimpleTestCase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier import dispatch, wire
from notifier.backends.redis import RedisNotifier
from notifier.events import NotifyEvent, group_name, watermark_message
from notifier.layers import LocalChannelLayer
from notifier.listener import CONNECTED, ListenerObserver
from notifier.resync import control_channel
from tests.support.redis_server import RedisServer, requires_redis_server, unique_channel
from tests.support.wire_fuzz import (
    DELIVER,
    FIELDS,
    SELF_ID,
    lenient_fields,
    mutate,
    render,
    shapes,
    valid_shapes,
)

TIMEOUT = 10  # generous: the machine is shared
SEEDS = st.integers(0, 2**32 - 1)
RENDERINGS = 5  # payloads rendered from each drawn shape

STRUCTURED_SHAPES = 2_000
RAW_BYTES = 3_000
RAW_TEXTS = 1_000
MUTATED_BASES = 600
LISTENER_BATCHES = 60
LISTENER_BATCH_SHAPES = 8  # x RENDERINGS + RAW_PER_BATCH = 50 payloads per batch
RAW_PER_BATCH = 10


def fuzz(examples):
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def corner_payloads(instance_id):
    """``(name, payload, outcome)``: sizes and depths no generator reaches, with what the
    reference does with them (``wire.py`` names the two deliberate divergences)."""

    def message(extra=b"", tenant=b'"t"', watermark=b"7"):
        return (
            b'{"tenant_id":'
            + tenant
            + b',"conversation_id":"c","new_watermark":'
            + watermark
            + b',"version":1,"instance_id":"'
            + str(instance_id).encode()
            + b'"'
            + extra
            + b"}"
        )

    deep = b"[" * 100_000 + b"]" * 100_000
    return [
        ("100k nested arrays", deep, dispatch.MALFORMED),
        ("100k nested objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, dispatch.MALFORMED),
        # serde skips an ignored value of any depth; Python's parser has a limit (documented).
        ("100k nested arrays in an ignored field", message(b',"x":' + deep), dispatch.MALFORMED),
        (
            "200 nested arrays in an ignored field",
            message(b',"x":' + b"[" * 200 + b"]" * 200),
            DELIVER,
        ),
        ("1 MiB tenant id", message(tenant=b'"' + b"t" * 2**20 + b'"'), DELIVER),
        ("100,000-digit integer in an ignored field", message(b',"x":' + b"9" * 100_000), DELIVER),
        ("100,000-digit watermark", message(watermark=b"9" * 100_000), dispatch.MALFORMED),
        ("1e999999 in an ignored field", message(b',"x":1e999999'), DELIVER),
        (
            "10,000 ignored members",
            message(b"".join(b',"k%d":%d' % (i, i) for i in range(10_000))),
            DELIVER,
        ),
        ("10,000 repeated ignored keys", message(b',"k":1' * 10_000), DELIVER),
        ("1 MiB of leading whitespace", b" " * 2**20 + message(), DELIVER),
        # Our publishers append a "ts" (ms) that listeners read back for the lag histogram.
        ("ts 0", message(b',"ts":0'), DELIVER),
        ("ts of 16 digits", message(b',"ts":' + b"9" * 16), DELIVER),
        ("ts of 17 digits", message(b',"ts":' + b"9" * 17), DELIVER),
        ("ts negative", message(b',"ts":-5'), DELIVER),
        ("ts a string", message(b',"ts":"1700000000000"'), DELIVER),
        ("ts nested", message(b',"ts":{"ts":1}'), DELIVER),
        ("1 MiB of NUL bytes", b"\x00" * 2**20, dispatch.MALFORMED),
        ("1 MiB of 0xFF bytes", b"\xff" * 2**20, dispatch.MALFORMED),
    ]


class DecodeFuzzTests(SimpleTestCase):
    """``decode`` and ``classify`` on generated payloads (no I/O)."""

    def assertSane(self, message, raw):
        """A decoded message holds what the reference's struct holds, reads the same through
        Python's lenient ``json``, and survives an encode/decode round trip."""
        self.assertIs(type(message.tenant_id), str)
        self.assertIs(type(message.conversation_id), str)
        message.tenant_id.encode("utf-8")  # no lone surrogates
        message.conversation_id.encode("utf-8")
        self.assertIs(type(message.new_watermark), int)
        self.assertTrue(0 <= message.new_watermark <= wire.U64_MAX)
        self.assertIs(type(message.version), int)
        self.assertTrue(0 <= message.version <= wire.U8_MAX)
        self.assertIsInstance(message.instance_id, uuid.UUID)
        lenient = lenient_fields(raw)
        self.assertIsNotNone(lenient, raw[:200])
        self.assertEqual(
            [message.tenant_id, message.conversation_id, message.new_watermark, message.version],
            lenient[:4],
        )
        self.assertEqual(message.instance_id, uuid.UUID(lenient[4]))
        again = wire.decode(wire.encode(message.event, message.instance_id))
        self.assertEqual(
            (again.event, again.instance_id, again.version),
            (message.event, message.instance_id, wire.VERSION),
        )

    def check_total(self, raw):
        """``decode`` either returns a sane message or raises MalformedPayload; ``classify``
        agrees with it. Returns the message or None."""
        try:
            message = wire.decode(raw)
        except wire.MalformedPayload:
            self.assertEqual(dispatch.classify(raw, SELF_ID)[:2], (None, dispatch.MALFORMED))
            return None
        self.assertSane(message, raw)
        decided, reason, _ = dispatch.classify(raw, SELF_ID)
        if message.instance_id == SELF_ID:
            self.assertEqual(reason, dispatch.SELF_ECHO)
        elif message.version != wire.VERSION:
            self.assertEqual(reason, dispatch.UNKNOWN_VERSION)
        else:
            self.assertEqual((decided, reason), (message, None))
        return message

    def test_structured_payloads_match_the_model(self):
        seen = {}

        @fuzz(STRUCTURED_SHAPES)
        @given(shape=shapes, seed=SEEDS)
        def check(shape, seed):
            for offset in range(RENDERINGS):
                payload = render(shape, seed + offset)
                seen[payload.outcome] = seen.get(payload.outcome, 0) + 1
                message, reason, _ = dispatch.classify(payload.raw, SELF_ID)
                got = DELIVER if message is not None else reason
                self.assertEqual(got, payload.outcome, payload.raw[:300])
                if message is not None:
                    self.assertEqual(message.event, payload.event, payload.raw[:300])
                    self.assertSane(message, payload.raw)

        check()
        self.assertGreaterEqual(sum(seen.values()), STRUCTURED_SHAPES * RENDERINGS)
        # The generator reaches every outcome, often (else the test would prove little).
        for outcome in (DELIVER, dispatch.MALFORMED, dispatch.SELF_ECHO, dispatch.UNKNOWN_VERSION):
            self.assertGreater(seen.get(outcome, 0), 200, seen)

    def test_arbitrary_bytes(self):
        count = []

        @fuzz(RAW_BYTES)
        @given(raw=st.binary(max_size=400))
        def check(raw):
            count.append(1)
            self.check_total(raw)

        check()
        self.assertGreaterEqual(len(count), RAW_BYTES)

    def test_arbitrary_texts(self):
        count = []

        @fuzz(RAW_TEXTS)
        @given(
            text=st.text(
                alphabet=st.sampled_from('{}[]":,0123456789-.eE tfnrulasx\\u'), max_size=120
            )
            | st.text(max_size=120)
        )
        def check(text):
            count.append(1)
            self.check_total(text.encode("utf-8"))

        check()
        self.assertGreaterEqual(len(count), RAW_TEXTS)

    def test_mutations_of_deliverable_payloads(self):
        count = []

        @fuzz(MUTATED_BASES)
        @given(shape=valid_shapes, seed=SEEDS)
        def check(shape, seed):
            base = render(shape, seed)
            self.assertEqual(base.outcome, DELIVER)
            for offset in range(RENDERINGS):
                count.append(1)
                self.check_total(mutate(base.raw, seed + offset))

        check()
        self.assertGreaterEqual(len(count), MUTATED_BASES * RENDERINGS)

    def test_the_model_names_the_decoders_fields(self):
        # A rename in the decoder would otherwise make the model's oracle vacuous.
        self.assertEqual(FIELDS, wire._FIELDS)

    def test_corners(self):
        other = uuid.uuid4()
        for name, raw, outcome in corner_payloads(other):
            with self.subTest(name):
                message, reason, _ = dispatch.classify(raw, SELF_ID)
                self.assertEqual(DELIVER if message is not None else reason, outcome)
                if message is not None:
                    self.assertEqual(message.instance_id, other)


class LoopThread:
    """An event loop in a thread: the listener runs there while hypothesis drives the test
    from the main thread (hypothesis's ``given`` runs synchronous functions)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout=TIMEOUT):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


class Outcomes(ListenerObserver):
    """What the listener reported for each payload, in order (appended on the loop thread)."""

    def __init__(self):
        self.items = []
        self.connects = 0

    def connected(self, listener, after_attempts):
        self.connects += 1

    def delivered(self, listener, message):
        self.items.append((DELIVER, message.event))

    def dropped(self, listener, reason, payload, error=None):
        self.items.append((reason, None))


@requires_redis_server
class ListenerFuzzTests(SimpleTestCase):
    """The production assembly (``RedisNotifier.listener()`` delivering into a channel layer)
    on a private ``redis-server``, fed raw PUBLISHes."""

    def setUp(self):
        self.server = RedisServer.start_for(self)
        self.channel = unique_channel("fuzz")
        self.loop = LoopThread()
        self.addCleanup(self.loop.close)
        self.layer = LocalChannelLayer()
        self.notifier = RedisNotifier(
            self.server.url, channel=self.channel, instance_id=SELF_ID, channel_layer=self.layer
        )
        self.outcomes = Outcomes()
        # The probe's messages share the connection with the fuzz (as in production), but
        # with a patient timeout: on a loaded machine a starved loop thread is not a wedged
        # subscriber, and this test is about payloads, not about wedge detection.
        self.listener = self.notifier.listener(
            observer=self.outcomes, probe={"timeout": 30.0, "stale": 60.0}
        )

        async def start():
            self.task = self.listener.start()
            await self.listener.wait_connected(TIMEOUT)

        self.loop.run(start())
        self.addCleanup(self.loop.run, self.listener.aclose())
        self.publisher = self.server.client()
        self.addCleanup(self.publisher.close)
        self.expected = []

    def publish(self, items):
        """PUBLISH ``(raw, outcome, event)`` items in one pipeline; wait until the listener
        has reported each one, then compare with what was expected, in order."""
        pipe = self.publisher.pipeline(transaction=False)
        for raw, _, _ in items:
            pipe.publish(self.channel, raw)
        receivers = pipe.execute()
        self.assertEqual(receivers, [1] * len(items))  # the listener is subscribed throughout
        self.expected.extend((outcome, event) for _, outcome, event in items)
        deadline = time.monotonic() + TIMEOUT
        while len(self.outcomes.items) < len(self.expected):
            self.assertLess(time.monotonic(), deadline, "the listener stopped reporting")
            time.sleep(0.005)
        got = self.outcomes.items[len(self.expected) - len(items) :]
        for (raw, _, _), have, want in zip(items, got, self.expected[-len(items) :], strict=True):
            self.assertEqual(have, want, raw[:300])

    def assertAlive(self):
        stats = self.listener.stats()
        self.assertFalse(self.task.done())
        self.assertEqual(
            (
                stats["state"],
                stats["attempt"],
                stats["connects"],
                stats["disconnects"],
                stats["errors"],
            ),
            (CONNECTED, 0, 1, 0, 0),
        )
        handled = stats["delivered"] + sum(stats[r] for r in dispatch.DROP_REASONS)
        self.assertEqual(handled, len(self.expected))
        for reason in dispatch.DROP_REASONS:
            self.assertEqual(stats[reason], sum(1 for o, _ in self.expected if o == reason))
        self.assertEqual(stats["delivered"], sum(1 for o, _ in self.expected if o == DELIVER))
        self.assertEqual(self.notifier.stats()["local_failures"], 0)

    def assertValidMessageStillDelivered(self):
        event = NotifyEvent("tenant-after-fuzz", "conversation-after-fuzz", 12345)
        group = group_name(event.tenant_id, event.conversation_id)

        async def join():
            name = await self.layer.new_channel()
            await self.layer.group_add(group, name)
            return name

        async def receive(name):
            # Peers' resync requests also reach the group: {"type": "webchat.resync"}.
            while True:
                message = await self.layer.receive(name)
                if message["type"] != "webchat.resync":
                    await self.layer.group_discard(group, name)
                    return message

        name = self.loop.run(join())
        self.publish([(wire.encode(event, uuid.uuid4()), DELIVER, event)])
        self.assertEqual(self.loop.run(receive(name)), watermark_message(event))

    def test_generated_payloads_published_raw(self):
        batches = []

        @fuzz(LISTENER_BATCHES)
        @given(
            drawn=st.lists(
                st.tuples(shapes, SEEDS),
                min_size=LISTENER_BATCH_SHAPES,
                max_size=LISTENER_BATCH_SHAPES,
            ),
            raws=st.lists(st.binary(max_size=200), min_size=RAW_PER_BATCH, max_size=RAW_PER_BATCH),
        )
        def check(drawn, raws):
            items = []
            for shape, seed in drawn:
                for offset in range(RENDERINGS):
                    payload = render(shape, seed + offset)
                    items.append((payload.raw, payload.outcome, payload.event))
            for raw in raws:
                # The decoder is checked against the model above; here the listener must
                # do exactly what the decoder decides.
                message, reason, _ = dispatch.classify(raw, SELF_ID)
                items.append((raw, reason or DELIVER, message.event if message else None))
            batches.append(len(items))
            self.publish(items)

        check()
        self.assertGreaterEqual(sum(batches), LISTENER_BATCHES * 50)
        self.assertAlive()
        self.assertValidMessageStillDelivered()
        self.assertAlive()

    def test_corners_published_raw(self):
        other = uuid.uuid4()
        items = []
        for _, raw, outcome in corner_payloads(other):
            event = None
            if outcome == DELIVER:
                event = wire.decode(raw).event
            items.append((raw, outcome, event))
        # And the same corners from this instance: dropped as self-echo when they decode.
        for _, raw, outcome in corner_payloads(SELF_ID):
            items.append((raw, dispatch.SELF_ECHO if outcome == DELIVER else outcome, None))
        self.publish(items)
        self.assertAlive()
        self.assertValidMessageStillDelivered()
        self.assertAlive()

    def publish_control(self, payloads):
        """PUBLISH ``payloads`` raw on the control channel (where replicas ask each other to
        resync), then one valid message on the global channel: Redis delivers in order on
        the listener's one connection, so once that message is in, every control message
        before it has been handled."""
        control = control_channel(self.channel)
        pipe = self.publisher.pipeline(transaction=False)
        for raw in payloads:
            pipe.publish(control, raw)
        self.assertEqual(pipe.execute(), [1] * len(payloads))
        self.assertValidMessageStillDelivered()

    def test_generated_payloads_on_the_control_channel(self):
        count = []

        @fuzz(40)
        @given(
            drawn=st.lists(st.tuples(shapes, SEEDS), min_size=4, max_size=4),
            raws=st.lists(st.binary(max_size=200), min_size=5, max_size=5),
        )
        def check(drawn, raws):
            payloads = [render(shape, seed).raw for shape, seed in drawn] + raws
            payloads += [b'{"instance_id": "%s"}' % str(SELF_ID).encode(), b'{"instance_id": 1}']
            count.append(len(payloads))
            self.publish_control(payloads)

        check()
        self.assertGreaterEqual(sum(count), 40 * 11)
        self.assertAlive()

    # Deeply nested JSON raises RecursionError, not ValueError: it must not escape the
    # session loop (which would drop the connection and resync every local consumer).
    def test_deeply_nested_json_on_the_control_channel(self):
        deep = b"[" * 100_000 + b"]" * 100_000
        with self.assertNoLogs("notifier.listener", "ERROR"):
            self.publish_control([deep, b'{"instance_id":' + deep + b"}"])
            self.assertAlive()
