"""POST /conversations/{id}/upload as the client sends it, and fetching by contentUrl."""

import json
import os
import tempfile
from urllib.parse import urlsplit

from django.test import TestCase, override_settings

from webchat.models import Activity, Conversation
from webchat.tokens import issue_token

from .directline_support import BASE, DirectLineMixin, bearer, expired_token

BOUNDARY = "----WebKitFormBoundaryQ7xXc2Vb3h8Y1eZ"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def multipart(parts, boundary=BOUNDARY) -> bytes:
    """A multipart/form-data body like a browser's FormData: (name, filename, type, bytes)."""
    chunks = []
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        chunks.append(head.encode() + b"\r\n" + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def activity_part(activity: dict):
    # directlinejs: formData.append('activity', new Blob([json], {type: ...})) -> filename "blob"
    return ("activity", "blob", "application/vnd.microsoft.activity", json.dumps(activity).encode())


class UploadTestCase(DirectLineMixin, TestCase):
    def setUp(self):
        super().setUp()
        media = tempfile.TemporaryDirectory()
        self.addCleanup(media.cleanup)
        self.media_root = media.name
        settings = override_settings(MEDIA_ROOT=self.media_root)
        settings.enable()
        self.addCleanup(settings.disable)
        self.path = f"{BASE}/conversations/{self.conversation.id}/upload"

    def upload(self, parts, credential=None, query="?userId=user-1", boundary=BOUNDARY, **extra):
        return self.client.post(
            self.path + query,
            data=multipart(parts, boundary),
            content_type=f"multipart/form-data; boundary={boundary}",
            **bearer(credential or self.token),
            **extra,
        )

    def stored_files(self) -> list:
        return [
            os.path.join(root, name)
            for root, _, names in os.walk(self.media_root)
            for name in names
        ]

    def message_with(self, *names):
        return {
            "type": "message",
            "text": "look",
            "from": {"id": "user-1", "name": "Ann", "role": "user"},
            "attachments": [{"contentType": t, "name": n} for n, t in names],
            "channelData": {"clientActivityID": "cid-1"},
        }


class UploadTests(UploadTestCase):
    def test_upload_stores_files_and_fills_content_urls(self):
        activity = self.message_with(("cat.png", "image/png"), ("notes.txt", "text/plain"))
        # directlinejs fetches the blobs concurrently, so file parts may come in any order.
        response = self.upload(
            [
                activity_part(activity),
                ("file", "notes.txt", "text/plain", b"some notes"),
                ("file", "cat.png", "image/png", PNG),
            ]
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["id"], f"{self.conversation.id}|0000001")
        stored = Activity.objects.get(conversation=self.conversation).data
        self.assertEqual(stored["from"], {"id": "user-1", "name": "Ann", "role": "user"})
        self.assertEqual(stored["channelData"], {"clientActivityID": "cid-1"})
        self.assertEqual(stored["text"], "look")
        self.assertEqual([a["name"] for a in stored["attachments"]], ["cat.png", "notes.txt"])
        for attachment, content in zip(stored["attachments"], (PNG, b"some notes"), strict=True):
            url = urlsplit(attachment["contentUrl"])
            self.assertEqual((url.scheme, url.netloc), ("http", "testserver"))
            self.assertRegex(
                url.path,
                rf"^{BASE}/conversations/{self.conversation.id}/attachments/[\w-]+/"
                + attachment["name"].replace(".", r"\.")
                + "$",
            )
            fetched = self.client.get(url.path, **bearer(self.token))
            self.assertEqual(fetched.status_code, 200)
            self.assertEqual(b"".join(fetched.streaming_content), content)
            self.assertEqual(fetched["Content-Type"].split(";")[0], attachment["contentType"])
            self.assertEqual(fetched["X-Content-Type-Options"], "nosniff")
        self.assertEqual(len(self.stored_files()), 2)

    def test_upload_honours_forwarded_proto(self):
        response = self.upload(
            [
                activity_part(self.message_with(("a.png", "image/png"))),
                ("file", "a.png", "image/png", PNG),
            ],
            HTTP_X_FORWARDED_PROTO="https",
        )
        self.assertEqual(response.status_code, 200)
        stored = Activity.objects.get(conversation=self.conversation).data
        self.assertTrue(stored["attachments"][0]["contentUrl"].startswith("https://testserver/"))

    def test_upload_with_the_secret_takes_user_id_from_the_query(self):
        activity = {"type": "message", "attachments": [{"contentType": "image/png", "name": "a"}]}
        response = self.upload(
            [activity_part(activity), ("file", "a", "image/png", PNG)],
            credential=self.secret,
            query="?userId=u42",
        )
        self.assertEqual(response.status_code, 200)
        stored = Activity.objects.get(conversation=self.conversation).data
        self.assertEqual(stored["from"], {"id": "u42", "role": "user"})

    def test_upload_without_activity_part_makes_a_message(self):
        response = self.upload([("file", "x.txt", "text/plain", b"x")])
        self.assertEqual(response.status_code, 200)
        stored = Activity.objects.get(conversation=self.conversation).data
        self.assertEqual(stored["type"], "message")
        self.assertEqual(stored["attachments"][0]["name"], "x.txt")
        self.assertEqual(stored["attachments"][0]["contentType"], "text/plain")

    def test_same_file_name_twice_gets_two_urls(self):
        activity = self.message_with(("a.txt", "text/plain"))
        response = self.upload(
            [
                activity_part(activity),
                ("file", "a.txt", "text/plain", b"first"),
                ("file", "a.txt", "text/plain", b"second"),
            ]
        )
        self.assertEqual(response.status_code, 200)
        urls = [a["contentUrl"] for a in Activity.objects.get().data["attachments"]]
        self.assertEqual(len(set(urls)), 2)
        bodies = [
            b"".join(self.client.get(urlsplit(u).path, **bearer(self.token)).streaming_content)
            for u in urls
        ]
        self.assertEqual(bodies, [b"first", b"second"])


class AttachmentAccessTests(UploadTestCase):
    def setUp(self):
        super().setUp()
        activity = self.message_with(("cat.png", "image/png"), ("page.html", "text/html"))
        self.upload(
            [
                activity_part(activity),
                ("file", "cat.png", "image/png", PNG),
                ("file", "page.html", "text/html", b"<script>alert(1)</script>"),
            ]
        )
        urls = [a["contentUrl"] for a in Activity.objects.get().data["attachments"]]
        self.png_path, self.html_path = (urlsplit(u).path for u in urls)

    def test_credentials_in_the_query_are_not_taken(self):
        # daphne's access log records query strings: credentials belong in the header.
        for credential in (self.token, self.secret):
            response = self.client.get(self.png_path, {"t": credential})
            self.assertDirectLineError(response, 401, "Unauthorized")

    def test_owner_tenant_secret_may_fetch(self):
        self.assertEqual(self.client.get(self.png_path, **bearer(self.secret)).status_code, 200)

    def test_active_content_is_a_download(self):
        response = self.client.get(self.html_path, **bearer(self.token))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "application/octet-stream")
        self.assertTrue(response["Content-Disposition"].startswith("attachment"))
        self.assertIn("sandbox", response["Content-Security-Policy"])

    def test_refused_without_a_valid_token_for_the_conversation(self):
        other = Conversation.objects.create(tenant=self.tenant)
        # Idle: no client for a TTL, so its expired tokens are refused (sliding renewal).
        Conversation.objects.filter(pk=self.conversation.pk).update(last_seen=0)
        cases = [
            ({}, 401, "Unauthorized"),
            (bearer("garbage"), 403, "Forbidden"),
            (bearer(issue_token(self.tenant.pk, other.id, "user-1")), 403, "Forbidden"),
            (bearer(expired_token(self.tenant.pk, self.conversation.id)), 403, "TokenExpired"),
            (bearer(self.other_secret), 404, "NotFound"),
        ]
        for extra, status, code in cases:
            with self.subTest(status=status, code=code):
                response = self.client.get(self.png_path, **extra)
                self.assertDirectLineError(response, status, code)

    def test_unknown_attachments_are_404(self):
        prefix = f"{BASE}/conversations/{self.conversation.id}/attachments"
        for path in (
            f"{prefix}/nope/cat.png",
            f"{prefix}/bad.id/cat.png",
            self.png_path.rsplit("/", 1)[0] + "/other.png",
            f"{prefix}/%2E%2E/cat.png",
            self.png_path.rsplit("/", 1)[0] + "/%2E%2E",
        ):
            with self.subTest(path=path):
                response = self.client.get(path, **bearer(self.token))
                self.assertDirectLineError(response, 404)


class BadUploadTests(UploadTestCase):
    def assertRefused(self, response, status, code=None):
        self.assertDirectLineError(response, status, code)
        self.assertEqual(self.activity_count(), 0)
        self.assertEqual(self.stored_files(), [])

    def test_file_over_4_mib_is_413(self):
        activity = self.message_with(
            ("big.bin", "application/octet-stream"), ("ok.txt", "text/plain")
        )
        response = self.upload(
            [
                activity_part(activity),
                ("file", "ok.txt", "text/plain", b"fine"),
                ("file", "big.bin", "application/octet-stream", b"\0" * (4 * 1024 * 1024 + 1)),
            ]
        )
        self.assertRefused(response, 413, "MessageSizeTooBig")

    def test_file_of_exactly_4_mib_is_fine(self):
        response = self.upload(
            [("file", "big.bin", "application/octet-stream", b"\1" * (4 * 1024 * 1024))]
        )
        self.assertEqual(response.status_code, 200)

    @override_settings(WEBCHAT_DIRECTLINE={"MAX_FILE_BYTES": 10, "MAX_UPLOAD_FILES": 2})
    def test_body_beyond_every_allowed_file_is_413_before_parsing(self):
        response = self.upload([("file", "a.txt", "text/plain", b"x" * 400_000)])
        self.assertRefused(response, 413, "MessageSizeTooBig")

    @override_settings(WEBCHAT_DIRECTLINE={"MAX_UPLOAD_FILES": 2})
    def test_too_many_files_is_400(self):
        parts = [("file", f"{n}.txt", "text/plain", b"x") for n in range(3)]
        self.assertRefused(self.upload(parts), 400, "BadArgument")

    def test_activity_part_over_256_kib_is_413(self):
        activity = {"type": "message", "text": "x" * (256 * 1024)}
        response = self.upload([activity_part(activity), ("file", "a.txt", "text/plain", b"x")])
        self.assertRefused(response, 413, "MessageSizeTooBig")

    def test_bad_activity_parts(self):
        cases = [
            (b"{", "BadSyntax"),
            (b"[]", "BadArgument"),
            (b'{"text": "no type"}', "MissingProperty"),
            (b'{"type": "message", "attachments": 1}', "BadArgument"),
        ]
        for data, code in cases:
            with self.subTest(data=data):
                response = self.upload(
                    [
                        ("activity", "blob", "application/vnd.microsoft.activity", data),
                        ("file", "a.txt", "text/plain", b"x"),
                    ]
                )
                self.assertRefused(response, 400, code)

    def test_no_file_is_400(self):
        response = self.upload([activity_part({"type": "message"})])
        self.assertRefused(response, 400, "BadArgument")

    def test_not_multipart_is_415(self):
        response = self.client.post(
            self.path, data="{}", content_type="application/json", **bearer(self.token)
        )
        self.assertRefused(response, 415, "UnsupportedMediaType")

    def test_broken_multipart_is_400(self):
        for content_type, data in [
            ("multipart/form-data", multipart([("file", "a.txt", "text/plain", b"x")])),
            ("multipart/form-data; boundary=", b"--\r\n"),
            (f"multipart/form-data; boundary={BOUNDARY}", b"garbage without boundaries"),
        ]:
            with self.subTest(content_type=content_type):
                response = self.client.post(
                    self.path, data=data, content_type=content_type, **bearer(self.token)
                )
                self.assertLess(response.status_code, 500)
                self.assertRefused(response, 400)

    def test_upload_with_the_secret_and_no_user_is_400(self):
        response = self.upload(
            [activity_part({"type": "message"}), ("file", "a.txt", "text/plain", b"x")],
            credential=self.secret,
            query="",
        )
        self.assertRefused(response, 400, "MissingProperty")

    def test_upload_scoping(self):
        other = Conversation.objects.create(tenant=self.tenant)
        parts = [activity_part({"type": "message"}), ("file", "a.txt", "text/plain", b"x")]
        for path, credential, status in [
            (f"{BASE}/conversations/{other.id}/upload", self.token, 403),
            (f"{BASE}/conversations/nope/upload", self.secret, 404),
            (self.path, self.other_secret, 404),
            (self.path, expired_token(self.tenant.pk, self.conversation.id), 403),
        ]:
            with self.subTest(path=path, status=status):
                response = self.client.post(
                    path,
                    data=multipart(parts),
                    content_type=f"multipart/form-data; boundary={BOUNDARY}",
                    **bearer(credential),
                )
                self.assertRefused(response, status)
