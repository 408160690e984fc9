"""Signed wire without I/O: the format (against an independent HMAC), forgeries of every
kind, rotation, resync requests, key parsing and the system checks E030-E032."""

import base64
import hashlib
import hmac
import json
import uuid

from django.core import checks
from django.test import SimpleTestCase, override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from notifier import dispatch, lag, signing, wire
from notifier.checks import check_settings
from notifier.conf import get_settings
from notifier.events import NotifyEvent
from notifier.exceptions import InvalidNotifierConfiguration
from notifier.signing import Keyring, SigningConfigError, parse_keys
from tests.support.wire_vectors import vectors

SECRET_1 = "s1-" + "a" * 40
SECRET_0 = "s0-" + "b" * 40
OTHER_SECRET = "xx-" + "c" * 40
INSTANCE = uuid.UUID("67e55044-10b1-426f-9247-bb680e5fe0c8")
TS = 1700000000123

SIGNER = Keyring.from_options({"k1": SECRET_1}, "k1")
BOTH = Keyring.from_options({"k1": SECRET_1, "k0": SECRET_0}, "k1")
OLD_ONLY = Keyring.from_options({"k0": SECRET_0}, None)
JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.text()
                | st.floats(allow_nan=False, allow_infinity=False))
IMPOSTOR = Keyring.from_options({"k1": OTHER_SECRET}, "k1")  # same id, another secret


def independent_sig(secret, fields):
    """The signature computed from the spec alone: compact JSON, raw UTF-8, in order."""
    canonical = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    mac = hmac.new(secret.encode(), canonical, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def signed(event=None, ts=TS, keyring=SIGNER, instance=INSTANCE):
    event = event or NotifyEvent("tenant-a", "conv-1", 42)
    return keyring.sign(wire.encode(event, instance), ts)


def verdict(keyring, payload):
    return keyring.verify(wire.decode(payload), payload)


def rewrite(payload, **changes):
    """``payload`` parsed, members changed (None removes one), dumped compactly again."""
    obj = json.loads(payload)
    for name, value in changes.items():
        if value is None:
            obj.pop(name, None)
        else:
            obj[name] = value
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class FormatTests(SimpleTestCase):
    def test_layout_and_an_independent_hmac(self):
        payload = signed(NotifyEvent("ténant\n\"\x01", "会话|1", 7))
        obj = json.loads(payload)
        self.assertEqual(list(obj), ["tenant_id", "conversation_id", "new_watermark", "version",
                                     "instance_id", "kid", "sig", "ts"])
        self.assertEqual(obj["kid"], "k1")
        self.assertEqual(len(obj["sig"]), 43)
        fields = {key: obj[key] for key in ("tenant_id", "conversation_id", "new_watermark",
                                            "version", "instance_id", "kid", "ts")}
        self.assertEqual(obj["sig"], independent_sig(SECRET_1, fields))
        # Without a timestamp, "ts" is neither sent nor covered.
        bare = json.loads(signed(ts=None))
        self.assertNotIn("ts", bare)
        fields = {key: bare[key] for key in ("tenant_id", "conversation_id", "new_watermark",
                                             "version", "instance_id", "kid")}
        self.assertEqual(bare["sig"], independent_sig(SECRET_1, fields))

    def test_canonical_bytes_are_encode_plus_kid_for_every_encode_vector(self):
        for vector in vectors()["encode"]:
            with self.subTest(vector["name"]):
                exact = base64.b64decode(vector["bytes_b64"])
                message = wire.decode(exact)
                self.assertEqual(signing.canonical_bytes(message, "k1"),
                                 exact[:-1] + b',"kid":"k1"}')
                self.assertEqual(signing.canonical_bytes(message, "k1", 5),
                                 exact[:-1] + b',"kid":"k1","ts":5}')

    def test_a_signed_message_is_still_wire_v1_for_keyless_readers(self):
        payload = signed()
        # What the reference (and a listener without keys) does: extra members are ignored.
        message, reason, _ = dispatch.classify(payload, uuid.uuid4())
        self.assertIsNone(reason)
        self.assertEqual(message.event, NotifyEvent("tenant-a", "conv-1", 42))
        self.assertEqual(lag.read(payload), TS)  # the lag histogram still reads "ts"

    def test_order_whitespace_escapes_and_uuid_spelling_do_not_matter(self):
        obj = json.loads(signed(NotifyEvent("ténant", "c\u2028", 9)))
        variants = {
            "reversed": json.dumps(dict(reversed(list(obj.items()))), ensure_ascii=False),
            "ascii escapes and spaces": json.dumps(obj, indent=2),
            "uppercase uuid": json.dumps({**obj, "instance_id": str(INSTANCE).upper()}),
            "braced uuid": json.dumps({**obj, "instance_id": f"{{{INSTANCE}}}"}),
            "simple uuid": json.dumps({**obj, "instance_id": INSTANCE.hex}),
            "extra members": json.dumps({"x": {"kid": 1, "sig": [2]}, **obj, "y": None}),
        }
        for name, text in variants.items():
            with self.subTest(name):
                self.assertIsNone(verdict(SIGNER, text.encode()))

    def test_tricky_ids_take_the_parsing_path_and_verify(self):
        for tenant in ("kid", "sig", "ts", '","kid":"k1","sig":"', '"ts":1}'):
            with self.subTest(tenant=tenant):
                self.assertIsNone(verdict(SIGNER, signed(NotifyEvent(tenant, "sig", 1))))

    def test_other_versions_are_covered_with_their_number(self):
        # A signed version-2 message verifies (the listener then drops it: unknown_version).
        fields = {"tenant_id": "t", "conversation_id": "c", "new_watermark": 1, "version": 2,
                  "instance_id": str(INSTANCE), "kid": "k1"}
        payload = json.dumps({**fields, "sig": independent_sig(SECRET_1, fields)}).encode()
        self.assertIsNone(verdict(SIGNER, payload))
        self.assertIsNotNone(verdict(SIGNER, rewrite(payload, version=1)))

    @hypothesis_settings(max_examples=200, deadline=None)
    @given(tenant=st.text(), conversation=st.text(),
           watermark=st.integers(0, 2**64 - 1), instance=st.uuids(),
           ts=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
    def test_sign_then_verify_round_trips(self, tenant, conversation, watermark, instance, ts):
        payload = signed(NotifyEvent(tenant, conversation, watermark), ts, BOTH, instance)
        self.assertIsNone(verdict(BOTH, payload))
        self.assertIsNone(verdict(SIGNER, payload))
        self.assertEqual(verdict(OLD_ONLY, payload), "unknown key id 'k1'")
        self.assertEqual(verdict(IMPOSTOR, payload), "signature mismatch (key 'k1')")


class ForgeryTests(SimpleTestCase):
    def assertRefused(self, payload, keyring=BOTH):
        reason = verdict(keyring, payload)
        self.assertIsNotNone(reason)
        return reason

    def test_unsigned_messages_are_refused(self):
        for vector in vectors()["decode"]:
            if vector["expect"] != "deliver":
                continue
            with self.subTest(vector["name"]):
                # valid_extra_fields_ignored has a "sig" (and "ts") but no key id.
                self.assertIn(self.assertRefused(base64.b64decode(vector["payload_b64"])),
                              ("unsigned", "not a signed JSON object"))

    def test_wrong_key_tampered_fields_wrong_kid_and_broken_sigs(self):
        good = signed()
        sig = json.loads(good)["sig"]
        cases = {
            "wrong key": signed(keyring=IMPOSTOR),
            "tenant": rewrite(good, tenant_id="tenant-b"),
            "conversation": rewrite(good, conversation_id="conv-2"),
            "watermark": rewrite(good, new_watermark=43),
            "instance": rewrite(good, instance_id=str(uuid.uuid4())),
            "ts": rewrite(good, ts=TS + 1),
            "ts removed": rewrite(good, ts=None),
            "ts added": rewrite(signed(ts=None), ts=TS),
            "kid of the other accepted key": rewrite(good, kid="k0"),
            "unknown kid": rewrite(good, kid="k9"),
            "kid removed": rewrite(good, kid=None),
            "sig removed": rewrite(good, sig=None),
            "sig truncated": rewrite(good, sig=sig[:-1]),
            "sig truncated to nothing": rewrite(good, sig=""),
            "sig padded": rewrite(good, sig=sig + "="),
            "sig with a standard-base64 character": rewrite(good, sig=sig[:10] + "+" + sig[11:]),
            "sig last char flipped": rewrite(good, sig=sig[:-1] + ("A" if sig[-1] != "A"
                                                                   else "B")),
            "sig not a string": rewrite(good, sig=12),
            "kid not a string": rewrite(good, kid=["k1"]),
            "ts a float": good.replace(b'"ts":%d' % TS, b'"ts":%d.0' % TS),
            "ts a string": rewrite(good, ts=str(TS)),
            "ts negative": rewrite(good, ts=-1),
            "ts over u64": rewrite(good, ts=2**64),
            "ts a bool": rewrite(signed(ts=1), ts=True),
            "duplicate kid": good.replace(b'"kid":"k1"', b'"kid":"k0","kid":"k1"'),
            "duplicate sig": good.replace(b'"sig":', b'"sig":"x","sig":'),
            "duplicate ts": good[:-1] + b',"ts":%d}' % TS,
            "array form": json.dumps(["tenant-a", "conv-1", 42, 1, str(INSTANCE)]).encode(),
        }
        for name, payload in cases.items():
            with self.subTest(name):
                self.assertNotEqual(payload, good)
                self.assertRefused(payload)
        self.assertIsNone(verdict(BOTH, good))

    @hypothesis_settings(max_examples=500, deadline=None)
    @given(members=st.dictionaries(
        st.sampled_from(["kid", "sig", "ts", "x"]),
        st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)))
    def test_any_signature_members_are_refused_without_raising(self, members):
        base = json.loads(signed(ts=None))
        del base["kid"], base["sig"]
        payload = json.dumps({**base, **members}).encode()
        self.assertIsInstance(verdict(BOTH, payload), str)

    def test_a_lone_surrogate_kid_is_refused_not_raised(self):
        payload = signed().replace(b'"kid":"k1"', b'"kid":"\\ud800"')
        self.assertEqual(self.assertRefused(payload), "unknown key id '\\ud800'")

    def test_reasons_name_no_secret(self):
        unsigned = wire.encode(NotifyEvent("t", "c", 1), INSTANCE)
        for payload in (signed(keyring=IMPOSTOR), rewrite(signed(), kid="k9"), unsigned):
            reason = self.assertRefused(payload)
            for secret in (SECRET_1, SECRET_0, OTHER_SECRET):
                self.assertNotIn(secret, reason)


class RotationTests(SimpleTestCase):
    def test_a_listener_with_both_keys_accepts_either_signer(self):
        old_signer = Keyring.from_options({"k0": SECRET_0, "k1": SECRET_1}, "k0")
        self.assertIsNone(verdict(BOTH, signed(keyring=old_signer)))
        self.assertIsNone(verdict(BOTH, signed(keyring=SIGNER)))
        self.assertIsNone(verdict(OLD_ONLY, signed(keyring=old_signer)))
        self.assertEqual(verdict(OLD_ONLY, signed(keyring=SIGNER)), "unknown key id 'k1'")


class ControlTests(SimpleTestCase):
    def test_signed_resync_requests_verify_and_forgeries_do_not(self):
        request = SIGNER.sign_control(str(INSTANCE), "lost")
        obj = json.loads(request)
        self.assertEqual(obj["sig"], independent_sig(
            SECRET_1, {"resync": True, "instance_id": str(INSTANCE), "reason": "lost",
                       "kid": "k1"}))
        self.assertIsNone(BOTH.verify_control(request))
        self.assertEqual(OLD_ONLY.verify_control(request), "unknown key id 'k1'")
        unsigned = json.dumps({"resync": True, "instance_id": str(INSTANCE),
                               "reason": "lost"}).encode()
        forged = {
            "unsigned": unsigned,
            "wrong key": IMPOSTOR.sign_control(str(INSTANCE), "lost"),
            "reason": json.dumps({**obj, "reason": "other"}).encode(),
            "instance": json.dumps({**obj, "instance_id": str(uuid.uuid4())}).encode(),
            "resync false": json.dumps({**obj, "resync": False}).encode(),
            "sig truncated": json.dumps({**obj, "sig": obj["sig"][:-2]}).encode(),
            "duplicate": request[:-1] + b',"kid":"k1"}',
            "not json": b"{",
            "a list": b"[]",
        }
        for name, payload in forged.items():
            with self.subTest(name):
                self.assertIsNotNone(BOTH.verify_control(payload))


class KeyParsingTests(SimpleTestCase):
    def test_dict_and_string_forms(self):
        self.assertEqual(parse_keys({"k1": SECRET_1, "k0": SECRET_0.encode()}),
                         {"k1": SECRET_1.encode(), "k0": SECRET_0.encode()})
        # The environment variable's form; a secret may hold ':' (split at the first one).
        self.assertEqual(parse_keys(f" k1:{SECRET_1}:x , k0:{SECRET_0},"),
                         {"k1": f"{SECRET_1}:x".encode(), "k0": SECRET_0.encode()})

    def test_the_single_key_signs_by_default(self):
        keyring = Keyring.from_options({"only": SECRET_1}, None)
        self.assertEqual(keyring.signing_key_id, "only")
        self.assertIsNone(Keyring.from_options(None, None))
        self.assertIsNone(Keyring.from_options({}, ""))

    def test_mistakes_have_their_ids_and_never_show_a_secret(self):
        cases = [
            ([SECRET_1], None, "notifier.E030"),
            ("", "k1", "notifier.E032"),
            (f"k1={SECRET_1}", None, "notifier.E030"),
            (f"k1:{SECRET_1},k1:{SECRET_0}", None, "notifier.E030"),
            ({f"{SECRET_1}": "k1"}, None, "notifier.E030"),  # swapped: the id is a secret
            ({"bad id": SECRET_1}, None, "notifier.E030"),
            ({"k1": 12345}, None, "notifier.E030"),
            (" , ", None, "notifier.E030"),
            ({"k1": ""}, None, "notifier.E031"),
            ({"k1": "short-secret"}, None, "notifier.E031"),
            ({"k1": "é" * 15}, None, "notifier.E031"),  # 30 bytes
            ({"k1": SECRET_1, "k0": SECRET_0}, None, "notifier.E032"),
            ({"k1": SECRET_1}, "k2", "notifier.E032"),
            ({"k1": SECRET_1}, SECRET_0, "notifier.E032"),
            (None, "k1", "notifier.E032"),
        ]
        for keys, key_id, check_id in cases:
            with self.subTest(keys=keys, key_id=key_id):
                with self.assertRaises(SigningConfigError) as caught:
                    Keyring.from_options(keys, key_id)
                self.assertEqual(caught.exception.check_id, check_id)
                text = f"{caught.exception} {caught.exception.hint}"
                for secret in (SECRET_1, SECRET_0, "short-secret"):
                    self.assertNotIn(secret, text)

    def test_exactly_32_bytes_is_enough(self):
        self.assertEqual(Keyring.from_options({"k": "x" * 32}, "k").key_ids, ("k",))

    def test_repr_shows_key_ids_only(self):
        self.assertEqual(repr(BOTH), "<Keyring signs with 'k1', accepts ['k0', 'k1']>")
        self.assertEqual(str(BOTH), repr(BOTH))


class SettingsTests(SimpleTestCase):
    BASE = {"BACKEND": "memory"}

    def test_no_keys_no_signing(self):
        with override_settings(WEBCHAT_NOTIFIER=self.BASE):
            self.assertIsNone(get_settings().signing)
            self.assertEqual(check_settings(), [])

    def test_keys_build_a_keyring_without_warnings(self):
        value = {**self.BASE, "SIGNING_KEYS": f"k1:{SECRET_1},k0:{SECRET_0}",
                 "SIGNING_KEY_ID": "k1"}
        with override_settings(WEBCHAT_NOTIFIER=value):
            keyring = get_settings().signing
            self.assertEqual((keyring.signing_key_id, keyring.key_ids), ("k1", ("k0", "k1")))
            self.assertEqual(check_settings(), [])  # no W002: both keys are known

    def test_system_checks_report_each_mistake(self):
        cases = [
            ({"SIGNING_KEYS": 42}, "notifier.E030"),
            ({"SIGNING_KEYS": {"k1": "tiny"}}, "notifier.E031"),
            ({"SIGNING_KEYS": {"k1": ""}}, "notifier.E031"),
            ({"SIGNING_KEYS": {"k1": SECRET_1}, "SIGNING_KEY_ID": "k0"}, "notifier.E032"),
            ({"SIGNING_KEY_ID": "k0"}, "notifier.E032"),
        ]
        for extra, check_id in cases:
            with self.subTest(extra=extra), override_settings(
                WEBCHAT_NOTIFIER={**self.BASE, **extra}
            ):
                messages = check_settings()
                self.assertEqual([m.id for m in messages], [check_id])
                self.assertIsInstance(messages[0], checks.Error)
                self.assertTrue(messages[0].hint)
                self.assertNotIn(SECRET_1, messages[0].msg + messages[0].hint)
                with self.assertRaises(InvalidNotifierConfiguration):
                    _ = get_settings().signing

    def test_checks_run_with_the_notifier_tag(self):
        with override_settings(WEBCHAT_NOTIFIER={**self.BASE, "SIGNING_KEYS": {"k1": "x"}}):
            self.assertIn("notifier.E031", [m.id for m in checks.run_checks(tags=["notifier"])])

    def test_the_redis_notifier_gets_the_keyring_from_settings(self):
        from notifier.backends.redis import RedisNotifier

        value = {"BACKEND": "redis", "URL": "redis://127.0.0.1:6379/0",
                 "SIGNING_KEYS": {"k1": SECRET_1}}
        with override_settings(WEBCHAT_NOTIFIER=value):
            notifier = RedisNotifier.from_settings(get_settings())
        self.assertEqual(notifier.signing.signing_key_id, "k1")
        self.assertNotIn(SECRET_1, repr(notifier))
        self.assertIs(notifier.listener(probe=False, resync=False).signing, notifier.signing)
        request = json.loads(notifier.resync_request())
        self.assertEqual(request["kid"], "k1")
        self.assertIsNone(notifier.signing.verify_control(notifier.resync_request()))
