"""The HTTP attack corpus against a real daphne replica, over raw sockets.

What Django's test client cannot express: raw bytes in the request line and headers,
oversized and numerous headers, broken framing (Content-Length, chunked encoding), absolute
request targets, HTTP/0.9 and unknown versions, and slowloris-style partial requests, plus
a subset of the test-client corpus (huge and deep bodies, invalid UTF-8, path tricks,
wrong methods, the ASGI-level ops endpoints) to prove the ASGI path answers the same.

Every case: an answer that is not a 5xx (or, for what daphne's HTTP parser refuses outright,
a closed connection), the Direct Line error body whenever Django answers under
``/v3/directline``, nothing written (row counts and watermarks of the replica's database),
and the replica still serving. Its access log must hold no 5xx and no "Internal Server Error".
The PostgreSQL class repeats what only PostgreSQL refused with a 500 (NUL in ids).
"""

import socket
import time

from django.test import SimpleTestCase

from tests.support.attack import claims_for, forge_claims, request_bytes
from tests.support.attack_replica import SIGNING_KEY, ReplicaAttackMixin

API = "/v3/directline"


class DaphneAttackTests(ReplicaAttackMixin, SimpleTestCase):
    def auth(self, credential=None):
        return [("Authorization", f"Bearer {credential or self.secret}")]

    def test_raw_bytes_in_the_request_line_and_headers(self):
        conv = f"{API}/conversations/{self.conversation_id}".encode()
        cases = [
            ("bytes in the path", request_bytes("GET", f"{API}/conversations/".encode()
                                                + b"\xff\xfe\x00", self.auth()), {400}),
            ("bytes in the query", request_bytes("GET", conv + b"?watermark=\xff\x80",
                                                 self.auth()), {400}),
            ("a space in the path", request_bytes("GET", conv + b" x", self.auth()), {400}),
            ("bytes in Authorization", request_bytes("GET", conv, [("Authorization",
                                                     b"Bearer \xff\xfe\x80.\xc0\xaf")]), {403}),
            ("NUL in Authorization", request_bytes("GET", conv, [("Authorization",
                                                   b"Bearer a\x00b")]), {400, 403}),
            ("bytes in Host", request_bytes("GET", conv, self.auth(), host=b"\xff\xfe"), {400}),
            ("a Host of 8 KB", request_bytes("GET", conv, self.auth(), host=b"h" * 8192),
             {400, None}),
            ("bytes in Content-Type", request_bytes(
                "POST", conv + b"/activities",
                self.auth(self.token) + [("Content-Type", b"application/\xffjson")],
                b'{"type": "message"}'), {415}),
            ("bytes in X-Forwarded-Proto", request_bytes(
                "GET", conv, self.auth() + [("X-Forwarded-Proto", b"\xff\xfe")]), {200}),
            ("a header name with bytes", request_bytes("GET", conv, self.auth()
                                                       + [(b"X-\xff", b"1")]), {400, 200}),
            ("a header without a colon", request_bytes("GET", conv, self.auth()
                                                        + [(b"Broken", b"")])
             .replace(b"Broken: ", b"Broken"), {400}),
        ]  # fmt: skip
        for case, data, allowed in cases:
            with self.subTest(case):
                self.assertAnswer(self.send(data), allowed, case)

    def test_oversized_request_lines_and_headers(self):
        conv = f"{API}/conversations/{self.conversation_id}"
        cases = [
            ("a header line of 70 KB", [("X-Big", "a" * 70_000)]),
            ("an Authorization of 1 MiB", [("Authorization", "Bearer " + "a" * 2**20)]),
            ("1,000 headers", [(f"X-H{i}", "v") for i in range(1000)]),
            ("200 headers of 1 KB", [(f"X-H{i}", "v" * 1024) for i in range(200)]),
        ]
        for case, headers in cases:
            with self.subTest(case):
                response = self.send(request_bytes("GET", conv, self.auth() + headers))
                self.assertAnswer(response, {None, 400, 403, 413, 431}, case)
        for size in (10_000, 100_000, 1_000_000):
            with self.subTest(path_bytes=size):
                response = self.send(
                    request_bytes("GET", f"{API}/conversations/" + "a" * size, self.auth())
                )
                self.assertAnswer(response, {None, 400, 404, 414}, f"path of {size}")

    def test_broken_framing(self):
        conv = f"{API}/conversations/{self.conversation_id}/activities"
        body = b'{"type": "message", "text": "framing"}'
        head = (
            f"POST {conv} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}"
            "\r\nContent-Type: application/json\r\nConnection: close\r\n"
        ).encode()
        cases = [
            ("negative Content-Length", b"Content-Length: -5\r\n\r\n" + body),
            ("non-numeric Content-Length", b"Content-Length: abc\r\n\r\n" + body),
            ("Content-Length with a plus", b"Content-Length: +38\r\n\r\n" + body),
            ("Content-Length list", b"Content-Length: 38, 38\r\n\r\n" + body),
            ("two different Content-Lengths",
             b"Content-Length: 38\r\nContent-Length: 5\r\n\r\n" + body),
            ("Content-Length past 2**64", b"Content-Length: 99999999999999999999999\r\n\r\n"),
            ("a bad chunk size", b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body),
            ("a chunk longer than declared", b"Transfer-Encoding: chunked\r\n\r\n2\r\n"
             + body + b"\r\n0\r\n\r\n"),
            ("chunked and Content-Length (smuggling)", b"Content-Length: 4\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST / HTTP/1.1\r\n"),
            ("an unknown transfer coding", b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            ("a body cut short", b"Content-Length: 1000\r\n\r\n" + body),
        ]  # fmt: skip
        for case, rest in cases:
            with self.subTest(case):
                response = self.send(head + rest, timeout=3)
                self.assertAnswer(response, {None, 400, 411, 413}, case)

    def test_odd_request_forms(self):
        conv = f"{API}/conversations/{self.conversation_id}".encode()
        cases = [
            ("HTTP/0.9", b"GET " + conv + b"\r\n\r\n", {None, 400}),
            ("HTTP/9.9", b"GET " + conv + b" HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
             {None, 400, 505}),
            ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
             {None, 400}),
            ("an absolute target elsewhere", b"GET http://evil.example" + conv
             + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", {None, 400, 404}),
            ("an unknown method", request_bytes("FOO", f"{API}/conversations"), {405}),
            ("a lower-case method", request_bytes("post", f"{API}/conversations"), {400, 401}),
            ("HTTP/1.0 without Host", b"GET " + conv + b" HTTP/1.0\r\n\r\n", {400, 401}),
        ]  # fmt: skip
        for case, data, allowed in cases:
            with self.subTest(case):
                # An absolute target's path is not under /v3/directline: Django's plain 404.
                self.assertAnswer(
                    self.send(data, timeout=5), allowed, case, directline="absolute" not in case
                )

    def test_wrong_methods_including_the_ops_endpoints(self):
        conv = f"{API}/conversations/{self.conversation_id}"
        cases = [
            ("PUT", conv), ("DELETE", conv + "/activities"), ("PATCH", f"{API}/conversations"),
            ("GET", f"{API}/tokens/generate"), ("TRACE", conv), ("OPTIONS", conv),
            ("POST", "/healthz"), ("DELETE", "/readyz"), ("PUT", "/metrics"),
            ("PROPFIND", "/healthz"),
        ]  # fmt: skip
        for method, path in cases:
            with self.subTest(method=method, path=path):
                response = self.send(request_bytes(method, path, self.auth(), b"{}"))
                self.assertAnswer(response, {405}, f"{method} {path}", path.startswith(API))

    def test_bodies_and_paths_through_asgi(self):
        conv = f"{API}/conversations/{self.conversation_id}"
        json_type = [("Content-Type", "application/json")]
        cases = [
            ("300 KB activity", conv + "/activities",
             b'{"type":"message","text":"' + b"x" * 300_000 + b'"}', {413}),
            ("100k nested arrays", conv + "/activities", b"[" * 100_000 + b"]" * 100_000, {400}),
            ("930 nested arrays", conv + "/activities",
             b'{"type":"message","channelData":' + b"[" * 930 + b"]" * 930 + b"}", {400}),
            ("invalid UTF-8", conv + "/activities", b'{"type":"message","text":"\xff"}', {400}),
            ("NUL in the id", f"{API}/conversations/%00/activities", b"{}", {403, 404}),
            ("CRLF in the id", f"{API}/conversations/a%0D%0Ab/x/y", b"{}", {404}),
            ("dot segments", f"{API}/conversations/../../tokens/generate", b"{}", {404}),
            ("an encoded slash", f"{API}/conversations/a%2Fb", b"{}", {404}),
            ("a trailing slash", conv + "/activities/", b"{}", {404}),
            ("the bare prefix", API, b"{}", {404}),
        ]  # fmt: skip
        for case, path, body, allowed in cases:
            with self.subTest(case):
                response = self.send(
                    request_bytes("POST", path, self.auth(self.token) + json_type, body)
                )
                self.assertAnswer(response, allowed, case)

    def test_slowloris_partial_requests_do_not_block_others(self):
        """Connections that never finish their request hold no worker: complete requests
        from others are answered meanwhile. (daphne closes idle connections only after
        Twisted's 12 h timeout: a front proxy must bound them in production.)"""
        conv = f"{API}/conversations/{self.conversation_id}"
        stalled = []
        try:
            for i in range(30):
                sock = socket.create_connection(("127.0.0.1", self.replica.port), timeout=5)
                stalled.append(sock)
                if i % 3 == 0:  # headers never finished
                    sock.sendall(f"GET {conv} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ".encode())
                elif i % 3 == 1:  # a body promised and never sent
                    sock.sendall(
                        request_bytes("POST", conv + "/activities", self.auth(self.token), b"")[:-2]
                        + b'Content-Length: 100000\r\n\r\n{"type":'
                    )
                else:  # a request line without its end
                    sock.sendall(b"POST " + conv.encode())
            started = time.monotonic()
            for _ in range(5):
                status, body = self.cluster.http(0, "GET", conv, secret=self.secret, timeout=10)
                self.assertEqual(status, 200, body)
            self.assertLess(time.monotonic() - started, 10)
        finally:
            for sock in stalled:
                sock.close()


class PostgresAttackTests(ReplicaAttackMixin, SimpleTestCase):
    """PostgreSQL refuses NUL in text even in a WHERE clause, and bigints past 2**63."""

    database = "postgres"

    def test_nul_in_conversation_ids(self):
        for suffix in ("", "/activities", "/upload", "/attachments/a/b.png"):
            for path in (
                f"{API}/conversations/%00{suffix}",
                f"{API}/conversations/{self.conversation_id}%00{suffix}",
                f"{API}/bot/conversations/a%00b/activities",
            ):
                with self.subTest(path=path):
                    method = "POST" if suffix in ("/activities", "/upload") else "GET"
                    response = self.send(request_bytes(
                        method, path, [("Authorization", f"Bearer {self.secret}"),
                                       ("Content-Type", "application/json")],
                        b'{"type": "message", "from": {"id": "u"}}'))  # fmt: skip
                    self.assertAnswer(response, {404, 415}, path)

    def test_correctly_signed_tokens_with_impossible_tenants(self):
        claims = claims_for(1, self.conversation_id)
        for tid in ("9" * 30, "\u0661", "-1", "1\u0000"):
            token = forge_claims(claims, {"tid": tid}, SIGNING_KEY)
            for method, path in (
                ("POST", f"{API}/conversations"),
                ("POST", f"{API}/tokens/refresh"),
                ("GET", f"{API}/conversations/{self.conversation_id}"),
            ):
                with self.subTest(tid=tid, call=path):
                    response = self.send(request_bytes(method, path, [
                        ("Authorization", f"Bearer {token}"),
                        ("Content-Type", "application/json")], b"{}"))  # fmt: skip
                    self.assertAnswer(response, {403}, f"{tid!r} {path}")
