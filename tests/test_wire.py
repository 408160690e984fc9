"""Wire v1 against the reference's vectors, serde's corners beyond them, and properties."""

import base64
import dataclasses
import json
import uuid

from django.test import SimpleTestCase
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from notifier import dispatch, wire
from notifier.events import NotifyEvent
from notifier.signing import Keyring
from tests.support.wire_vectors import COPY, SHARED, vectors

OTHER = "67e55044-10b1-426f-9247-bb680e5fe0c8"




def payload(tenant='"t"', conversation='"c"', watermark="1", version="1", instance=None, extra=""):
    instance = f'"{OTHER}"' if instance is None else instance
    return (
        f'{{"tenant_id":{tenant},"conversation_id":{conversation},"new_watermark":{watermark},'
        f'"version":{version},"instance_id":{instance}{extra}}}'
    ).encode()


class VectorTests(SimpleTestCase):
    def test_the_copy_is_the_shared_file(self):
        # Where shared/ lies beside the clone (CI), the copy must not have drifted from it.
        if SHARED.exists():
            self.assertEqual(COPY.read_bytes(), SHARED.read_bytes())
        self.assertTrue(COPY.exists())

    def test_the_file_holds_all_vectors(self):
        self.assertEqual(len(vectors()["decode"]), 52)
        self.assertEqual(len(vectors()["encode"]), 4)
        self.assertEqual(vectors()["channel"], wire.DEFAULT_CHANNEL)

    def test_decode_vectors(self):
        self_id = uuid.UUID(vectors()["self_instance_id"])
        for vector in vectors()["decode"]:
            with self.subTest(vector["name"]):
                raw = base64.b64decode(vector["payload_b64"])
                message, reason, _ = dispatch.classify(raw, self_id)
                if vector["expect"] == "deliver":
                    self.assertIsNone(reason)
                    self.assertEqual(message.event, NotifyEvent(**vector["event"]))
                    self.assertEqual(message.version, wire.VERSION)
                    self.assertEqual(message.instance_id, uuid.UUID(OTHER))
                else:
                    self.assertIsNone(message)
                    self.assertEqual("drop:" + reason, vector["expect"])

    def test_decode_raises_only_for_malformed_vectors(self):
        # Version and self-echo are the listener's business: decode returns those messages.
        for vector in vectors()["decode"]:
            with self.subTest(vector["name"]):
                data = base64.b64decode(vector["payload_b64"])
                if vector["expect"] == "drop:malformed":
                    with self.assertRaises(wire.MalformedPayload) as caught:
                        wire.decode(data)
                    self.assertTrue(str(caught.exception))
                else:
                    self.assertIsInstance(wire.decode(data), wire.WireMessage)

    def test_encode_vectors_byte_for_byte(self):
        for vector in vectors()["encode"]:
            with self.subTest(vector["name"]):
                fields = vector["fields"]
                self.assertEqual(fields["version"], wire.VERSION)
                event = NotifyEvent(
                    fields["tenant_id"], fields["conversation_id"], fields["new_watermark"]
                )
                encoded = wire.encode(event, uuid.UUID(fields["instance_id"]))
                self.assertEqual(encoded, base64.b64decode(vector["bytes_b64"]))
                self.assertEqual(encoded, vector["text"].encode("utf-8"))


class SerdeCornerTests(SimpleTestCase):
    """What serde_json::from_slice::<Wire> does where the vectors are silent."""

    accepted = {
        "duplicate unknown key": payload(extra=',"x":1,"x":2'),
        "escaped field name": payload().replace(b'"tenant_id"', b'"tenant\\u005fid"'),
        "-0 in an ignored field": payload(watermark="0", extra=',"x":-0'),
        "huge float in an ignored field": payload(extra=',"x":1e400'),
        "5000-digit integer in an ignored field": payload(extra=',"x":' + "9" * 5000),
        "lone surrogate nested in an ignored field": payload(extra=',"x":{"\\ud800":"\\udc00"}'),
        "surrogate pair": payload(tenant='"\\ud83d\\ude00"'),
        "escaped slash": payload(tenant='"a\\/b"'),
        "the five fields as an array": f'["t","c",1,1,"{OTHER}"]'.encode(),
        "urn with uppercase hex": payload(instance=f'"urn:uuid:{OTHER.upper()}"'),
        "colons in ids": payload(tenant='"a:b"', conversation='"c:d"'),
    }
    rejected = {
        "-0 watermark": payload(watermark="-0"),
        "-0 version": payload(version="-0"),
        "duplicate field spelled with an escape": payload(extra=',"tenant\\u005fid":"u"'),
        "NaN in an ignored field": payload(extra=',"x":NaN'),
        "-Infinity watermark": payload(watermark="-Infinity"),
        "lone surrogate in a top-level key": payload(extra=',"\\ud800":1'),
        "lone low surrogate": payload(conversation='"\\udc00"'),
        "high surrogate then a letter": payload(tenant='"\\ud800\\u0041"'),
        "raw control character": payload(tenant='"a\x01"'),
        "5000-digit watermark": payload(watermark="9" * 5000),
        "21-digit watermark": payload(watermark="1" + "0" * 20),
        "leading zero": payload(watermark="042"),
        "UTF-8 byte order mark": b"\xef\xbb\xbf" + payload(),
        "form feed is not JSON whitespace": b"\x0c" + payload(),
        "array of six": f'["t","c",1,1,"{OTHER}",2]'.encode(),
        "array of four": b'["t","c",1,1]',
        "uppercase URN prefix": payload(instance=f'"URN:UUID:{OTHER}"'),
        "braced simple UUID": payload(instance='"{' + OTHER.replace("-", "") + '}"'),
        "braced URN": payload(instance='"{urn:uuid:' + OTHER + '}"'),
        "UUID with a trailing newline": payload(instance=f'"{OTHER}\\n"'),
        "UUID with an Arabic-Indic digit": payload(instance='"\u0666' + OTHER[1:] + '"'),
        "UUID as an array": payload(instance="[1,2]"),
        "trailing comma": payload().replace(b"}", b",}"),
        "array inside a string field": payload(tenant='["t"]'),
    }

    def test_accepted(self):
        for name, data in self.accepted.items():
            with self.subTest(name):
                self.assertIsInstance(wire.decode(data), wire.WireMessage)

    def test_rejected(self):
        for name, data in self.rejected.items():
            with self.subTest(name), self.assertRaises(wire.MalformedPayload):
                wire.decode(data)

    def test_decoded_values(self):
        message = wire.decode(payload(tenant='"\\ud83d\\ude00"', watermark=str(2**64 - 1)))
        self.assertEqual(message.tenant_id, "\U0001f600")
        self.assertEqual(message.new_watermark, 2**64 - 1)
        self.assertEqual(wire.decode(f'["t","c",7,1,"{OTHER}"]'.encode()).event.new_watermark, 7)

    def test_decoded_message_is_an_ordinary_frozen_dataclass(self):
        message = wire.decode(payload(tenant='"x"', watermark="5"))
        self.assertEqual(message, wire.WireMessage("x", "c", 5, 1, uuid.UUID(OTHER)))
        self.assertEqual(hash(message), hash(wire.WireMessage("x", "c", 5, 1, uuid.UUID(OTHER))))
        with self.assertRaises(dataclasses.FrozenInstanceError):
            message.version = 2
        self.assertEqual(message.event, NotifyEvent("x", "c", 5))

    def test_error_names_the_problem(self):
        cases = {
            payload(watermark="true"): "new_watermark",
            payload(version="256"): "version",
            payload(extra=',"conversation_id":"x"'): "duplicate field 'conversation_id'",
            payload(instance='"nope"'): "instance_id",
            b"\xff": "UTF-8",
        }
        for data, words in cases.items():
            with self.subTest(words), self.assertRaisesMessage(wire.MalformedPayload, words):
                wire.decode(data)

    def test_malformed_payload_is_a_value_error(self):
        self.assertTrue(issubclass(wire.MalformedPayload, ValueError))

    def test_classify_order(self):
        me = uuid.uuid4()
        mine_v99 = payload(version="99", instance=f'"{str(me).upper()}"')
        classify = dispatch.classify
        self.assertEqual(classify(mine_v99, me)[:2], (None, dispatch.SELF_ECHO))
        self.assertEqual(classify(payload(version="99"), me)[:2], (None, dispatch.UNKNOWN_VERSION))
        self.assertEqual(classify(b"{", me)[:2], (None, dispatch.MALFORMED))
        # With keys, an unsigned message is a bad signature even when it claims our id, and a
        # malformed payload is still malformed.
        keys = Keyring({"k1": b"k" * 32}, "k1")
        self.assertEqual(classify(mine_v99, me, keys)[:2], (None, dispatch.BAD_SIGNATURE))
        self.assertEqual(classify(b"{", me, keys)[:2], (None, dispatch.MALFORMED))


class EncodeTests(SimpleTestCase):
    def test_rejects_watermarks_outside_u64(self):
        for watermark in (-1, 2**64):
            with self.subTest(watermark), self.assertRaisesMessage(ValueError, "u64"):
                wire.encode(NotifyEvent("t", "c", watermark), uuid.uuid4())

    def test_rejects_ids_utf8_cannot_hold(self):
        with self.assertRaisesMessage(ValueError, "surrogate"):
            wire.encode(NotifyEvent("t\ud800", "c", 1), uuid.uuid4())

    def test_rejects_wrong_types(self):
        for event, instance in (
            (NotifyEvent("t", "c", True), uuid.uuid4()),
            (NotifyEvent("t", "c", 1.0), uuid.uuid4()),
            (NotifyEvent(1, "c", 1), uuid.uuid4()),
            (NotifyEvent("t", "c", 1), str(uuid.uuid4())),
        ):
            with self.subTest(event=event), self.assertRaises(TypeError):
                wire.encode(event, instance)

    def test_del_and_line_separators_stay_raw(self):
        encoded = wire.encode(NotifyEvent("\x7f\u2028", "\x1f", 0), uuid.UUID(OTHER))
        self.assertTrue(
            encoded.startswith('{"tenant_id":"\x7f\u2028","conversation_id":"\\u001f"'.encode())
        )


ids = st.text()
u64 = st.integers(min_value=0, max_value=2**64 - 1)


def spellings(value: uuid.UUID):
    """Every spelling of ``value`` the uuid crate parses."""
    hyphenated = str(value)
    for text in (hyphenated, value.hex, "{" + hyphenated + "}", "urn:uuid:" + hyphenated):
        yield text
        yield text.replace(hyphenated, hyphenated.upper()).replace(value.hex, value.hex.upper())


class PropertyTests(SimpleTestCase):
    @hypothesis_settings(max_examples=300, deadline=None)
    @given(tenant=ids, conversation=ids, watermark=u64, instance=st.uuids())
    def test_encode_then_decode_round_trips(self, tenant, conversation, watermark, instance):
        event = NotifyEvent(tenant, conversation, watermark)
        encoded = wire.encode(event, instance)
        message = wire.decode(encoded)
        self.assertEqual(message.event, event)
        self.assertEqual((message.version, message.instance_id), (wire.VERSION, instance))
        self.assertEqual(dispatch.classify(encoded, instance)[:2], (None, dispatch.SELF_ECHO))
        other = uuid.UUID(int=instance.int ^ 1)
        self.assertEqual(dispatch.classify(encoded, other)[:2], (message, None))

    @hypothesis_settings(max_examples=200, deadline=None)
    @given(tenant=ids, conversation=ids, watermark=u64, instance=st.uuids())
    def test_encode_matches_an_independent_serialiser(
        self, tenant, conversation, watermark, instance
    ):
        fields = {
            "tenant_id": tenant,
            "conversation_id": conversation,
            "new_watermark": watermark,
            "version": 1,
            "instance_id": str(instance),
        }
        expected = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
        self.assertEqual(
            wire.encode(NotifyEvent(tenant, conversation, watermark), instance), expected
        )

    @hypothesis_settings(max_examples=100, deadline=None)
    @given(instance=st.uuids())
    def test_every_uuid_crate_spelling_decodes_to_the_same_id(self, instance):
        for spelling in spellings(instance):
            message = wire.decode(payload(instance=f'"{spelling}"'))
            self.assertEqual(message.instance_id, instance, spelling)

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(data=st.binary(max_size=300))
    def test_arbitrary_bytes_only_ever_raise_malformed(self, data):
        try:
            message = wire.decode(data)
        except wire.MalformedPayload:
            return
        self.assertIsInstance(message, wire.WireMessage)

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(
        position=st.integers(min_value=0, max_value=140),
        garbage=st.binary(min_size=1, max_size=4),
    )
    def test_corrupted_messages_only_ever_raise_malformed(self, position, garbage):
        original = wire.encode(NotifyEvent("tenant-a", "conv-1", 42), uuid.UUID(OTHER))
        data = original[:position] + garbage + original[position + len(garbage) :]
        try:
            message = wire.decode(data)
        except wire.MalformedPayload:
            return
        # What survives corruption is still a well-typed message.
        self.assertIsInstance(message.tenant_id, str)
        self.assertTrue(0 <= message.new_watermark < 2**64)
        self.assertTrue(0 <= message.version < 256)


def outcome(decode, data):
    """What a decoder makes of ``data``: the message's fields, or the error it raises."""
    try:
        return dataclasses.astuple(decode(data))
    except wire.MalformedPayload as exc:
        return ("malformed", str(exc))


def general_decode(data):
    # The general path alone, without the canonical layout's shortcut.
    return wire._decode_text(data.decode("utf-8"))


# Near the canonical layout: the shortcut's regex decides on these, so its edges are what
# the comparison below must cover (quotes, backslashes, controls, non-ASCII in the ids;
# numbers at and past their ranges, with leading zeros or signs; other UUID spellings; "ts").
# Each field is in the layout often enough that a good share of payloads match it whole.
def mostly(canonical, other):
    return st.one_of(*[canonical] * 8, other)


near_ids = mostly(
    st.text(st.characters(codec="utf-8", exclude_characters='"\\', min_codepoint=0x20)),
    st.text(st.characters(codec="utf-8") | st.sampled_from('"\\\x00\x1f\x7f:-')),
)
near_numbers = mostly(
    st.integers(min_value=0, max_value=255).map(str),
    st.integers(min_value=0, max_value=2**64 + 10).map(str)
    | st.sampled_from(["00", "01", "-0", "-1", "1.0", "1e3", "256", "999", "1000",
                       str(2**64 - 1), str(2**64), "9" * 20, "9" * 21, " 1"]),
)
near_instances = mostly(
    st.uuids().map(str),
    st.uuids().flatmap(lambda value: st.sampled_from(list(spellings(value)))),
)
near_ts = mostly(
    st.sampled_from(["", ',"ts":0', ',"ts":1700000000123', ',"ts":' + "9" * 16]),
    st.sampled_from([',"ts":01', ',"ts":-1', ',"ts":1.5', ',"ts":' + "9" * 17, ',"ts":"x"',
                     ',"ts":null', ',"kid":"k1"']),
)


class CanonicalShortcutTests(SimpleTestCase):
    """decode() reads our publishers' exact layout with one regex; the general path must agree
    on every payload, inside and around that layout."""

    @hypothesis_settings(max_examples=500, deadline=None)
    @given(tenant=ids, conversation=ids, watermark=u64, instance=st.uuids(),
           ts=st.none() | st.integers(min_value=0, max_value=2**53))
    def test_encoded_payloads(self, tenant, conversation, watermark, instance, ts):
        data = wire.encode(NotifyEvent(tenant, conversation, watermark), instance)
        if ts is not None:
            data = data[:-1] + b',"ts":%d}' % ts
        self.assertEqual(outcome(wire.decode, data), outcome(general_decode, data))

    @hypothesis_settings(max_examples=1000, deadline=None)
    @given(tenant=near_ids, conversation=near_ids, watermark=near_numbers, version=near_numbers,
           instance=near_instances, ts=near_ts)
    def test_payloads_near_the_layout(self, tenant, conversation, watermark, version, instance,
                                      ts):
        data = payload(f'"{tenant}"', f'"{conversation}"', watermark, version, f'"{instance}"',
                       ts)
        self.assertEqual(outcome(wire.decode, data), outcome(general_decode, data))
