"""The Direct Line REST API under attack: bad input beyond the WebChat issue's cases.

Through Django's test client: wrong methods on every endpoint, huge headers, queries and
bodies, deep JSON nesting, invalid UTF-8 in bodies, queries and headers, path tricks,
tampered and forged tokens. Through a real daphne replica (``test_attack_daphne``): what a
client library cannot send (raw bytes in the request line and headers, oversized headers,
broken framing, slowloris-style partial requests).

Every case expects: no 5xx, no redirect, a 4xx with the Direct Line error body (bounded in
size: messages never echo a huge input), and nothing written (activities, conversations and
their watermarks, secrets, uploaded files).
"""

import json
import os
import tempfile

from django.test import TestCase, override_settings

from webchat.models import Activity, Conversation, Tenant, TenantSecret
from webchat.tokens import issue_token, signing_key

from .directline_support import BASE, DirectLineMixin, bearer
from .support.attack import claims_for, forge_claims, insider_tokens, tampered_tokens

MAX_MESSAGE = 400  # characters: an error message names the problem, never echoes a megabyte
OTHER_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
                 "PROPFIND", "FOO")  # fmt: skip


class AttackTestCase(DirectLineMixin, TestCase):
    def setUp(self):
        super().setUp()
        media = tempfile.TemporaryDirectory()
        self.addCleanup(media.cleanup)
        self.media_root = media.name
        overridden = override_settings(MEDIA_ROOT=self.media_root)
        overridden.enable()
        self.addCleanup(overridden.disable)
        self.conv_path = f"/conversations/{self.conversation.id}"
        self.before = self.snapshot()

    def snapshot(self):
        files = [os.path.join(d, f) for d, _, names in os.walk(self.media_root) for f in names]
        return {
            "activities": Activity.objects.count(),
            "conversations": dict(Conversation.objects.values_list("id", "watermark")),
            "tenants": Tenant.objects.count(),
            "secrets": TenantSecret.objects.count(),
            "files": sorted(files),
        }

    def assertNothingWritten(self):
        self.assertEqual(self.snapshot(), self.before)

    def assertRefused(self, response, *statuses, code=None):
        """A 4xx (one of ``statuses`` if given) with a bounded Direct Line error body."""
        status = response.status_code
        self.assertTrue(400 <= status < 500, f"{status}: {response.content[:300]!r}")
        if statuses:
            self.assertIn(status, statuses, response.content[:300])
        if response.request["REQUEST_METHOD"] == "HEAD":
            return None  # no body
        error = response.json()["error"]
        self.assertEqual(set(error), {"code", "message"})
        self.assertLessEqual(len(error["message"]), MAX_MESSAGE, error["message"][:100])
        if code is not None:
            self.assertEqual(error["code"], code)
        return error

    def json_paths(self):
        """(path, credential) of every endpoint that reads a JSON body."""
        return [
            (self.conv_path + "/activities", self.token),
            (f"/bot{self.conv_path}/activities", self.secret),
            ("/conversations", self.secret),
            ("/tokens/generate", self.secret),
        ]

    def send(
        self, method, path, data=b"", content_type="application/json", credential=None, **extra
    ):
        headers = bearer(credential) if credential else {}
        return self.client.generic(method, BASE + path, data, content_type, **headers, **extra)


class WrongMethodTests(AttackTestCase):
    def endpoints(self):
        conv = self.conv_path
        return [
            ("/tokens/generate", {"POST"}),
            ("/tokens/refresh", {"POST"}),
            ("/conversations", {"POST"}),
            (conv, {"GET"}),
            (conv + "/activities", {"GET", "POST"}),
            (conv + "/upload", {"POST"}),
            (conv + "/attachments/abc/file.png", {"GET"}),
            (f"/bot{conv}/activities", {"GET", "POST"}),
        ]

    def test_every_other_method_on_every_endpoint_is_405(self):
        for path, allowed in self.endpoints():
            for method in OTHER_METHODS:
                if method in allowed:
                    continue
                for credential in (None, self.secret, self.token):
                    with self.subTest(path=path, method=method, credential=bool(credential)):
                        response = self.send(
                            method, path, b'{"type": "message"}', credential=credential
                        )
                        self.assertRefused(response, 405)
                        self.assertEqual(set(response["Allow"].split(", ")), allowed)
        self.assertNothingWritten()

    def test_unknown_paths_are_404_for_their_methods_and_405_for_others(self):
        for method in OTHER_METHODS:
            with self.subTest(method=method):
                response = self.send(method, "/nothing/here", credential=self.secret)
                if method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}:
                    self.assertRefused(response, 404)
                else:
                    self.assertRefused(response, 405)
        self.assertNothingWritten()

    def test_cors_preflight_writes_nothing(self):
        for path, _ in self.endpoints():
            with self.subTest(path=path):
                response = self.client.options(
                    BASE + path,
                    HTTP_ORIGIN="https://www.example.com",
                    HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE",
                    HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
                )
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.content, b"")
        self.assertNothingWritten()


class HugeInputTests(AttackTestCase):
    def test_huge_authorization_headers(self):
        for header in (
            "Bearer " + "a" * 2**20,
            "Bearer " + "a." * 2**19,
            "B" * 2**20,
            "Bearer " + self.secret + " " * 2**20 + "x",
        ):
            with self.subTest(size=len(header)):
                response = self.send("POST", "/conversations", b"{}", HTTP_AUTHORIZATION=header)
                self.assertRefused(response, 401, 403)
        self.assertNothingWritten()

    def test_huge_and_many_other_headers(self):
        many = {f"HTTP_X_H{i}": "v" * 100 for i in range(2000)}
        cases = [
            {"CONTENT_TYPE": "application/json; " + "x" * 2**20},
            {"CONTENT_TYPE": "application/" + "j" * 2**20},
            {"HTTP_X_FORWARDED_PROTO": "https" * 2**18},
            {"HTTP_X_MS_BOT_AGENT": "x" * 2**20},
            many,
        ]
        for extra in cases:
            with self.subTest(headers=sorted(extra)[:2]):
                response = self.send(
                    "POST",
                    self.conv_path + "/activities",
                    b'{"type": "x"}',
                    credential=self.token,
                    **extra,
                )
                self.assertLess(response.status_code, 500)
                if response.status_code >= 400:
                    self.assertRefused(response)
                else:  # a header the service ignores: the post itself was fine
                    Activity.objects.filter(conversation=self.conversation).delete()
                    Conversation.objects.filter(pk=self.conversation.pk).update(watermark=0)
        self.assertNothingWritten()

    def test_huge_query_strings(self):
        cases = [
            "?watermark=" + "9" * 2**20,
            "?watermark=" + "a" * 2**20,
            "?" + "&".join(f"k{i}=v" for i in range(5000)),  # over DATA_UPLOAD_MAX_NUMBER_FIELDS
            "?watermark=1&watermark=" + "x" * 100_000,
        ]
        for query in cases:
            for path in (self.conv_path, self.conv_path + "/activities"):
                with self.subTest(path=path, query=query[:30]):
                    response = self.send("GET", path + query, credential=self.token)
                    self.assertRefused(response, 400)
        self.assertNothingWritten()

    def test_huge_bodies(self):
        limit = 256 * 1024
        over = b'{"type": "message", "text": "' + b"x" * limit + b'"}'
        paths = [
            (self.conv_path + "/activities", self.token),
            (f"/bot{self.conv_path}/activities", self.secret),
            ("/conversations", self.secret),
            ("/tokens/generate", self.secret),
        ]
        for path, credential in paths:
            for body in (over, b" " * (limit + 1), b"[" * (3 * 2**20)):
                with self.subTest(path=path, size=len(body)):
                    response = self.send("POST", path, body, credential=credential)
                    self.assertRefused(response, 413, code="MessageSizeTooBig")
        self.assertNothingWritten()

    def test_content_length_that_lies(self):
        body = b'{"type": "message", "text": "' + b"x" * 1000 + b'"}'
        for length in ("10", "0", "-1", "abc", str(2**70), ""):
            with self.subTest(length=length):
                response = self.send(
                    "POST",
                    self.conv_path + "/activities",
                    body,
                    credential=self.token,
                    CONTENT_LENGTH=length,
                )
                self.assertLess(response.status_code, 500, response.content[:200])
                if response.status_code == 200:
                    # Django read the whole body as sent: a valid post, undo it.
                    Activity.objects.filter(conversation=self.conversation).delete()
                    Conversation.objects.filter(pk=self.conversation.pk).update(watermark=0)
                else:
                    self.assertRefused(response)
        self.assertNothingWritten()

    def test_upload_floods(self):
        boundary = "b0undary"

        def multipart(parts):
            chunks = [
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                + data
                + b"\r\n"
                for name, filename, data in parts
            ]
            return b"".join(chunks) + f"--{boundary}--\r\n".encode()

        cases = {
            "11 files": multipart([("file", f"f{i}.txt", b"x") for i in range(11)]),
            "5,000 parts": multipart([("file", f"f{i}", b"") for i in range(5000)]),
            "a file over 4 MiB": multipart([("file", "big.bin", b"x" * (4 * 2**20 + 1))]),
            "an activity part over 256 KiB": multipart(
                [
                    ("activity", "blob", b'{"type":"message","t":"' + b"x" * 2**18 + b'"}'),
                    ("file", "a.txt", b"x"),
                ]
            ),
            "a 100k-deep activity": multipart(
                [("activity", "blob", b"[" * 100_000 + b"]" * 100_000), ("file", "a.txt", b"x")]
            ),
            "a file name of 10,000 characters": multipart(
                [("file", "n" * 10_000, b"x"), ("activity", "blob", b"{")]
            ),
            "no closing boundary": multipart([("file", "a.txt", b"x")])[:-20],
        }
        for name, body in cases.items():
            with self.subTest(name):
                response = self.send(
                    "POST", self.conv_path + "/upload?userId=u", body,
                    content_type=f"multipart/form-data; boundary={boundary}",
                    credential=self.token,
                )  # fmt: skip
                self.assertRefused(response, 400, 413)
        # A body over every limit is refused by its Content-Length, before it is read.
        response = self.send(
            "POST", self.conv_path + "/upload", cases["11 files"],
            content_type=f"multipart/form-data; boundary={boundary}", credential=self.token,
            CONTENT_LENGTH=str(2**40),
        )  # fmt: skip
        self.assertRefused(response, 413)
        self.assertNothingWritten()


class DeepNestingTests(AttackTestCase):
    """Python's json raises RecursionError around 1,000 levels; a document a little under
    that parsed, then failed to be re-encoded from the deeper stack of the ORM (a 500)."""

    def test_deep_documents_are_refused(self):
        cases = {
            "100k arrays": b"[" * 100_000 + b"]" * 100_000,
            "100k objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
            # Where parsing stops depends on the caller's stack depth: these depths cover the
            # window that used to parse, then fail to be stored (RecursionError, a 500).
            **{
                f"{depth} arrays in channelData": b'{"type":"message","channelData":'
                + b"[" * depth
                + b"]" * depth
                + b"}"
                for depth in range(850, 1000, 10)
            },
            "101 levels": b'{"type":"message","channelData":' + b"[" * 100 + b"]" * 100 + b"}",
            "101 levels in the user": b'{"user":' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}",
            "200k unclosed arrays": b"[" * 200_000,
        }
        for path, credential in self.json_paths():
            for name, body in cases.items():
                with self.subTest(path=path, case=name):
                    response = self.send("POST", path, body, credential=credential)
                    self.assertRefused(response, 400, 413)
        self.assertNothingWritten()

    def test_the_deepest_document_allowed_is_stored_served_and_read_back(self):
        channel_data = json.loads("[" * 99 + "]" * 99)  # 100 levels with the activity itself
        response = self.send(
            "POST", self.conv_path + "/activities",
            json.dumps({"type": "message", "channelData": channel_data}).encode(),
            credential=self.token,
        )  # fmt: skip
        self.assertEqual(response.status_code, 200, response.content[:300])
        polled = self.send("GET", self.conv_path + "/activities", credential=self.token)
        self.assertEqual(polled.status_code, 200)
        self.assertEqual(polled.json()["activities"][0]["channelData"], channel_data)


class InvalidUtf8Tests(AttackTestCase):
    def test_bodies(self):
        cases = {
            "0xFF": b'{"type": "message", "text": "\xff"}',
            "overlong slash": b'{"type": "message", "text": "\xc0\xaf"}',
            "encoded surrogate": b'{"type": "message", "text": "\xed\xa0\x80"}',
            "past U+10FFFF": b'{"type": "message", "text": "\xf4\x90\x80\x80"}',
            "truncated sequence": b'{"type": "message", "text": "\xe2\x82"}',
            "invalid in a key": b'{"type": "message", "\xfe": 1}',
            "latin-1 text": '{"type": "message", "text": "café"}'.encode("latin-1"),
            "UTF-16": '{"type": "message"}'.encode("utf-16"),
            "UTF-8 BOM": b'\xef\xbb\xbf{"type": "message"}',
            "escaped lone surrogate": b'{"type": "message", "text": "\\udc00"}',
            "escaped NUL deep": b'{"type": "message", "channelData": [[{"k": "\\u0000"}]]}',
            "escaped lone surrogate key": b'{"type": "message", "\\ud800": 1}',
        }
        for path, credential in self.json_paths():
            for name, body in cases.items():
                with self.subTest(path=path, case=name):
                    response = self.send("POST", path, body, credential=credential)
                    self.assertRefused(response, 400)
        self.assertNothingWritten()

    def test_query_strings(self):
        for query in (
            "?watermark=%FF",
            "?watermark=%C0%AF",
            "?watermark=%ED%A0%80",
            "?watermark=%EF%BC%91",
            "?watermark=%00",
            "?%FF=%FE&watermark=1%FF",
        ):
            for path in (
                self.conv_path,
                self.conv_path + "/activities",
                f"/bot{self.conv_path}/activities",
            ):
                with self.subTest(path=path, query=query):
                    credential = self.secret if path.startswith("/bot") else self.token
                    response = self.send("GET", path + query, credential=credential)
                    self.assertRefused(response, 400)
        self.assertNothingWritten()

    def test_headers(self):
        # WSGI/ASGI hand headers over as latin-1 text: any byte arrives as some character.
        cases = [
            {"HTTP_AUTHORIZATION": "Bearer \xff\xfe\x80"},
            {"HTTP_AUTHORIZATION": "Bearer " + self.token[:-3] + "\xe9\xe9\xe9"},
            {"HTTP_AUTHORIZATION": "Bearer\xa0" + self.token},
            {"HTTP_AUTHORIZATION": "Bearer " + self.secret + "\x00"},
            {"CONTENT_TYPE": "application/json; charset=\xff"},
            {"CONTENT_TYPE": "application/json; charset=latin-1"},
            {"CONTENT_TYPE": "application/json; charset=utf-16"},
            {"CONTENT_TYPE": "application/\xffjson"},
        ]
        for extra in cases:
            with self.subTest(headers=extra):
                extra = {"HTTP_AUTHORIZATION": f"Bearer {self.token}", **extra}
                response = self.send(
                    "POST", self.conv_path + "/activities", b'{"type": "message"}', **extra
                )
                self.assertRefused(response, 401, 403, 415)
        self.assertNothingWritten()


class PathTrickTests(AttackTestCase):
    def tricky_ids(self):
        conv = self.conversation.id
        return [
            "..", "%2e%2e", ".", conv + "%2F..", conv + "%2Fupload%2F..", "%00", conv + "%00",
            conv.upper() if conv.upper() != conv else conv.lower(), conv + " ", "%20" + conv,
            conv + "%0D%0ALocation:%20https://evil.example", "%E4%BC%9A%E8%AF%9D", "%F0%9F%98%80",
            "%FF%FE", "%ED%A0%80", "a" * 10_240, "%" * 3, "%25", conv + ";x=1", conv + "|0000001",
            "con%u0076", "\u202e" + conv,
        ]  # fmt: skip

    def test_tricky_conversation_ids(self):
        for conversation_id in self.tricky_ids():
            for suffix in ("", "/activities", "/upload", "/attachments/a/b.png"):
                for credential in (self.secret, self.token, self.other_secret):
                    method = "POST" if suffix in ("/activities", "/upload") else "GET"
                    path = f"/conversations/{conversation_id}{suffix}"
                    with self.subTest(path=path[:80], credential=credential[:6]):
                        response = self.send(
                            method, path, b'{"type": "message"}', credential=credential
                        )
                        self.assertRefused(response, 400, 403, 404, 415)
        self.assertNothingWritten()

    def test_trailing_and_double_slashes_and_dot_segments(self):
        conv = self.conv_path
        paths = [
            "/conversations/", conv + "/", conv + "/activities/", "/tokens/generate/",
            "//conversations", conv + "//activities", "/./conversations", conv + "/./activities",
            conv + "/../../tokens/generate", "/conversations/../tokens/refresh",
            "/%2Fconversations", conv + "/activities%2F", conv + "/activities/..",
            conv + "/stream", "/bot/conversations/", "/bot" + conv + "/activities/",
        ]  # fmt: skip
        for path in paths:
            for method in ("GET", "POST"):
                with self.subTest(path=path, method=method):
                    response = self.send(
                        method, path, b'{"type": "message"}', credential=self.secret
                    )
                    self.assertRefused(response, 404, 405)
        self.assertNothingWritten()


class TokenTamperingTests(AttackTestCase):
    def conversation_calls(self):
        """(method, path, body) of every user call that names this conversation."""
        conv = self.conv_path
        return [
            ("GET", conv, b""),
            ("GET", conv + "/activities", b""),
            ("POST", conv + "/activities", b'{"type": "message", "text": "forged"}'),
            ("GET", conv + "/attachments/a/b.png", b""),
        ]

    def session_calls(self):
        """The calls that act on the token's own conversation (start, refresh)."""
        return [("POST", "/conversations", b"{}"), ("POST", "/tokens/refresh", b"")]

    def assertAllRefused(self, tokens, calls, *statuses):
        with self.assertLogs("webchat.views.errors", "INFO") as logs:
            for name, token in tokens:
                for method, path, body in calls:
                    with self.subTest(token=name, call=f"{method} {path}"):
                        response = self.send(method, path, body, credential=token)
                        self.assertRefused(response, *statuses)
        # Refusals are logged, never with the credential (nor the secret it was signed with).
        logged = "\n".join(logs.output)
        for _, token in tokens:
            for part in token.split("."):
                if len(part) > 16:
                    self.assertNotIn(part, logged)
        self.assertNotIn(self.secret, logged)
        self.assertNothingWritten()

    def test_forged_and_broken_tokens(self):
        claims = claims_for(self.tenant.pk, self.conversation.id)
        tokens = tampered_tokens(claims, signing_key(), self.secret)
        self.assertAllRefused(tokens, self.conversation_calls() + self.session_calls(), 403)

    def test_correctly_signed_tokens_with_wrong_claims(self):
        other = Conversation.objects.create(tenant=self.tenant)
        self.before = self.snapshot()
        claims = claims_for(self.tenant.pk, self.conversation.id)
        tokens = insider_tokens(claims, signing_key(), other.id, self.other_tenant.pk)
        self.assertAllRefused(tokens, self.conversation_calls(), 403)
        # A token for the other conversation is a valid token for it: start/refresh serve it.
        mismatched = [(name, token) for name, token in tokens if "conversation" not in name]
        self.assertAllRefused(mismatched, self.session_calls(), 403, 404)

    def test_tokens_of_a_revoked_secret(self):
        # Issue 13: a revoked secret's tokens kept working and refreshing forever. Revoking
        # the secret (as the admin does) moves the tenant's token epoch on.
        secret = TenantSecret.objects.get(tenant=self.tenant)
        secret.revoked = True
        secret.save()
        self.before = self.snapshot()
        tokens = [("minted before the revocation", self.token)]
        self.assertAllRefused(tokens, self.conversation_calls() + self.session_calls(), 403)

    def test_tokens_signed_with_the_public_development_string(self):
        # Issue 13: with DEBUG on, tokens were signed with SECRET_KEY's public default.
        claims = claims_for(self.tenant.pk, self.conversation.id)
        tokens = [("dev string", forge_claims(claims, {}, "dev-insecure-secret-key-change-me"))]
        self.assertAllRefused(tokens, self.conversation_calls() + self.session_calls(), 403)

    def test_tokens_mixing_two_tenants(self):
        foreign = Conversation.objects.create(tenant=self.other_tenant)
        self.before = self.snapshot()
        tokens = [
            ("other tenant's conversation", issue_token(self.other_tenant.pk, foreign.id, "u")),
            ("its conv, our tid", issue_token(self.tenant.pk, foreign.id, "u")),
            ("our conv, its tid", issue_token(self.other_tenant.pk, self.conversation.id, "u")),
        ]
        self.assertAllRefused(tokens, self.conversation_calls(), 403)
        self.assertAllRefused(tokens[1:], self.session_calls(), 403, 404)

    def test_credentials_outside_the_authorization_header(self):
        conv = self.conv_path
        for path in (
            f"{conv}?t={self.token}",
            f"{conv}?token={self.token}",
            f"{conv}/activities?access_token={self.secret}",
        ):
            with self.subTest(path=path[:60]):
                self.assertRefused(self.send("GET", path), 401, code="Unauthorized")
        for header in (
            "Basic " + self.secret,
            "Bearer",
            "Bearer  ",
            f"Token {self.secret}",
            f"Bearer {self.secret} {self.secret}",
            f"Bearer\t{self.secret}x",
        ):
            with self.subTest(header=header[:20]):
                response = self.send("GET", conv, HTTP_AUTHORIZATION=header)
                self.assertRefused(response, 401, 403)
        self.assertNothingWritten()


class RefusedBeforeAnyViewTests(AttackTestCase):
    """What Django refuses before routing (handler400) still answers in Direct Line's shape."""

    def test_hosts_outside_allowed_hosts(self):
        for host in ("evil.example", "127.0.0.1:8000@evil.example", "\xff\xfe", "h" * 8192):
            with self.subTest(host=host[:20]):
                with self.assertLogs("django.security", "ERROR"):
                    response = self.send(
                        "POST",
                        self.conv_path + "/activities",
                        b'{"type": "message"}',
                        credential=self.token,
                        HTTP_HOST=host,
                    )
                error = self.assertRefused(response, 400, code="BadArgument")
                self.assertNotIn(host[:20], error["message"])
        self.assertNothingWritten()

    def test_other_paths_keep_djangos_page(self):
        with self.assertLogs("django.security", "ERROR"):
            response = self.client.get("/admin/", HTTP_HOST="evil.example")
        self.assertEqual(response.status_code, 400)
        self.assertNotEqual(response.get("Content-Type"), "application/json")


@override_settings(DEBUG=True)
class DemoTokenTests(AttackTestCase):
    """``POST /demo/token`` (DEBUG only) reads a JSON body too."""

    def test_bad_bodies(self):
        cases = {
            "1,500 nested arrays": b"[" * 1500 + b"]" * 1500,
            "a NUL in the id": b'{"conversationId": "a\\u0000b"}',
            "a lone surrogate in the id": b'{"conversationId": "\\ud800"}',
            "a 65-character id": b'{"conversationId": "' + b"a" * 65 + b'"}',
            "invalid UTF-8": b'{"conversationId": "\xff"}',
        }
        for name, body in cases.items():
            with self.subTest(name):
                response = self.client.post("/demo/token", body, "application/json")
                self.assertRefused(response, 400, code="BadArgument")
        self.assertNothingWritten()
