"""Authorization on every Direct Line endpoint, CSRF, CORS, and unrouted paths."""

import json

from django.test import Client, TestCase, override_settings

from webchat.models import Activity, Conversation

from .directline_support import BASE, DirectLineMixin, bearer


class AuthorizationTests(DirectLineMixin, TestCase):
    def endpoints(self):
        conv = self.conversation.id
        return [
            ("POST", "/tokens/generate"),
            ("POST", "/tokens/refresh"),
            ("POST", "/conversations"),
            ("GET", f"/conversations/{conv}"),
            ("GET", f"/conversations/{conv}/activities"),
            ("POST", f"/conversations/{conv}/activities"),
            ("POST", f"/conversations/{conv}/upload"),
            ("GET", f"/conversations/{conv}/attachments/abc/a.png"),
            ("GET", f"/bot/conversations/{conv}/activities"),
            ("POST", f"/bot/conversations/{conv}/activities"),
        ]

    def call(self, method, path, **extra):
        body = json.dumps({"type": "message", "from": {"id": "u"}})
        if method == "GET":
            return self.client.get(BASE + path, **extra)
        return self.client.post(BASE + path, body, content_type="application/json", **extra)

    def test_missing_or_malformed_header_is_401(self):
        headers = [
            {},
            {"HTTP_AUTHORIZATION": ""},
            {"HTTP_AUTHORIZATION": "Bearer"},
            {"HTTP_AUTHORIZATION": "Bearer "},
            {"HTTP_AUTHORIZATION": f"Basic {self.secret}"},
            {"HTTP_AUTHORIZATION": self.secret},
            {"HTTP_AUTHORIZATION": f"Bearer {self.secret} extra"},
        ]
        for method, path in self.endpoints():
            for extra in headers:
                with self.subTest(method=method, path=path, header=extra):
                    self.assertDirectLineError(
                        self.call(method, path, **extra), 401, "Unauthorized"
                    )
        self.assertEqual(Activity.objects.count(), 0)

    def test_garbage_credentials_are_403(self):
        credentials = [
            ("garbage", "Forbidden"),
            ("x" * 5000, "Forbidden"),
            ("héllo-wörld", "Forbidden"),
            ("a.b.c", "BadArgument"),
            ("eyJhbGciOiJub25lIn0.eyJ0aWQiOiIxIn0.", "BadArgument"),
        ]
        for method, path in self.endpoints():
            for credential, code in credentials:
                with self.subTest(method=method, path=path, credential=credential[:20]):
                    response = self.call(method, path, **bearer(credential))
                    self.assertDirectLineError(response, 403, code)
        self.assertEqual(Activity.objects.count(), 0)

    def test_revoked_secret_is_403(self):
        self.tenant.secrets.update(revoked=True)
        response = self.post_json("/conversations", {}, self.secret)
        self.assertDirectLineError(response, 403, "Forbidden")

    @override_settings(WEBCHAT_TOKEN_SIGNING_KEY="another-key-of-at-least-32-characters!")
    def test_token_signed_with_another_key_is_403(self):
        response = self.get(f"/conversations/{self.conversation.id}/activities", self.token)
        self.assertDirectLineError(response, 403, "BadArgument")

    def test_scheme_is_case_insensitive(self):
        response = self.client.get(
            f"{BASE}/conversations/{self.conversation.id}/activities",
            HTTP_AUTHORIZATION=f"bearer {self.token}",
        )
        self.assertEqual(response.status_code, 200)

    def test_one_tenant_never_reaches_another(self):
        foreign = Conversation.objects.create(tenant=self.other_tenant)
        for method, path in self.endpoints():
            if "/conversations/" not in path:
                continue
            path = path.replace(self.conversation.id, foreign.id)
            with self.subTest(method=method, path=path):
                self.assertDirectLineError(
                    self.call(method, path, **bearer(self.secret)), 404, "NotFound"
                )
                self.assertDirectLineError(
                    self.call(method, path, **bearer(self.token)), 403, "Forbidden"
                )
        self.assertEqual(Activity.objects.count(), 0)


class TransportTests(DirectLineMixin, TestCase):
    def test_bearer_endpoints_are_csrf_exempt(self):
        client = Client(enforce_csrf_checks=True)
        response = client.post(
            f"{BASE}/conversations/{self.conversation.id}/activities",
            json.dumps({"type": "message"}),
            content_type="application/json",
            **bearer(self.token),
        )
        self.assertEqual(response.status_code, 200)
        response = client.post(
            BASE + "/conversations", "{}", content_type="application/json", **bearer(self.secret)
        )
        self.assertEqual(response.status_code, 201)

    def test_trailing_slash_is_a_directline_404_not_a_redirect(self):
        response = self.post_json("/conversations/", {}, self.secret)
        error = self.assertDirectLineError(response, 404, "NotFound")
        self.assertIn("trailing slash", error["message"])
        self.assertDirectLineError(self.get("/no/such/thing", self.secret), 404, "NotFound")

    def test_wrong_methods_are_405(self):
        for method, path in [
            ("delete", f"/conversations/{self.conversation.id}/activities"),
            ("put", "/conversations"),
            ("post", f"/conversations/{self.conversation.id}"),
            ("get", f"/conversations/{self.conversation.id}/upload"),
        ]:
            with self.subTest(method=method, path=path):
                response = getattr(self.client, method)(BASE + path, **bearer(self.secret))
                self.assertDirectLineError(response, 405, "MethodNotAllowed")

    @override_settings(CORS_ALLOWED_ORIGINS=["https://shop.example"], CORS_ALLOW_ALL_ORIGINS=False)
    def test_cors_preflight_allows_the_client_headers(self):
        response = self.client.options(
            f"{BASE}/conversations/{self.conversation.id}/activities",
            HTTP_ORIGIN="https://shop.example",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type,x-ms-bot-agent",
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Access-Control-Allow-Origin"], "https://shop.example")
        allowed = response["Access-Control-Allow-Headers"]
        for header in ("authorization", "content-type", "x-ms-bot-agent", "x-requested-with"):
            self.assertIn(header, allowed)

    def test_too_many_query_fields_is_400(self):
        query = "&".join(f"f{n}=1" for n in range(1100))
        response = self.client.get(
            f"{BASE}/conversations/{self.conversation.id}/activities?{query}", **bearer(self.token)
        )
        self.assertDirectLineError(response, 400, "BadArgument")
