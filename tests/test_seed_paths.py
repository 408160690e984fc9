"""The seed's URL layout (issue 15): /v1/{messaging,web}/webchat/<tenant>/..., in process.

The same views as /v3/directline; the path's tenant (name or slug) must be the credential's.
"""

import json
from urllib.parse import parse_qs, urlsplit

from django.test import SimpleTestCase, TestCase, override_settings

from webchat.models import Conversation, Tenant
from webchat.ops import OpsEndpoints
from webchat.paths import is_directline_path
from webchat.tokens import read_token

from .directline_support import DirectLineMixin, bearer
from .test_ops_endpoints import call, inner_app


def seed_base(tenant: str, surface: str = "messaging") -> str:
    return f"/v1/{surface}/webchat/{tenant}"


class SeedPathTests(DirectLineMixin, TestCase):
    def setUp(self):
        super().setUp()
        # A name that needs percent-encoding, with a slug that does not.
        self.named = Tenant.objects.create(name="Acme Corp")
        self.named_secret = self.named.add_secret()

    def call(self, method, path, body=None, credential=None):
        headers = bearer(credential) if credential else {}
        if body is None:
            return self.client.generic(method, path, **headers)
        return self.client.generic(
            method, path, json.dumps(body), content_type="application/json", **headers
        )

    # The token endpoint

    def test_token_with_the_secret_on_both_surfaces_by_name_and_slug(self):
        for tenant in ("Acme%20Corp", "acme-corp"):
            for surface in ("messaging", "web"):
                with self.subTest(tenant=tenant, surface=surface):
                    response = self.call(
                        "POST", seed_base(tenant, surface) + "/token",
                        {"user": {"id": "u1", "name": "Ann"}}, self.named_secret,
                    )  # fmt: skip
                    self.assertEqual(response.status_code, 200, response.content)
                    body = response.json()
                    self.assertEqual(set(body), {"conversationId", "token", "expires_in"})
                    claims = read_token(body["token"])
                    self.assertEqual(claims.tenant_id, str(self.named.pk))
                    self.assertEqual((claims.user_id, claims.user_name), ("u1", "Ann"))
                    conversation = Conversation.objects.get(pk=body["conversationId"])
                    self.assertEqual(conversation.tenant, self.named)

    def test_token_by_get_as_the_seed_takes_any_method(self):
        response = self.call("GET", seed_base("acme-corp") + "/token", None, self.named_secret)
        self.assertEqual(response.status_code, 200, response.content)
        response = self.call("PUT", seed_base("acme-corp") + "/token", None, self.named_secret)
        self.assertDirectLineError(response, 405, "MethodNotAllowed")

    def test_token_with_another_tenants_secret_is_403(self):
        response = self.call("POST", seed_base("acme-corp") + "/token", {}, self.secret)
        error = self.assertDirectLineError(response, 403, "Forbidden")
        self.assertIn("acme-corp", error["message"])

    def test_token_for_an_unknown_tenant_is_404(self):
        for credential in (self.secret, None):
            response = self.call("POST", seed_base("nobody") + "/token", {}, credential)
            error = self.assertDirectLineError(response, 404, "NotFound")
            self.assertIn("create_tenant", error["message"])

    def test_token_with_a_token_is_403(self):
        response = self.call("POST", seed_base("tenant-a") + "/token", {}, self.token)
        self.assertDirectLineError(response, 403, "Forbidden")

    def test_token_without_a_secret_is_401_unless_the_tenant_is_public(self):
        response = self.call("POST", seed_base("acme-corp") + "/token", {})
        error = self.assertDirectLineError(response, 401, "Unauthorized")
        self.assertIn("PUBLIC_TOKEN_TENANTS", error["message"])
        for listed in ("Acme Corp", "acme-corp"):
            with self.subTest(listed=listed), override_settings(
                WEBCHAT_SEED={"PUBLIC_TOKEN_TENANTS": [listed]}
            ):
                response = self.call("POST", seed_base("Acme%20Corp") + "/token", {})
                self.assertEqual(response.status_code, 200, response.content)
                claims = read_token(response.json()["token"])
                self.assertEqual(claims.tenant_id, str(self.named.pk))
                self.assertTrue(claims.user_id.startswith("dl_"))
                # Another tenant is still closed.
                response = self.call("POST", seed_base("tenant-a") + "/token", {})
                self.assertDirectLineError(response, 401, "Unauthorized")

    # The Direct Line API under the prefix

    def test_a_conversation_under_the_prefix_stays_on_it(self):
        base = seed_base("tenant-a") + "/v3/directline"
        token = self.call("POST", seed_base("tenant-a") + "/token", {}, self.secret).json()
        started = self.call("POST", base + "/conversations", {}, token["token"])
        self.assertEqual(started.status_code, 201, started.content)
        body = started.json()
        self.assertEqual(body["conversationId"], token["conversationId"])
        stream = urlsplit(body["streamUrl"])
        self.assertEqual((stream.scheme, stream.netloc), ("ws", "testserver"))
        self.assertEqual(stream.path, f"{base}/conversations/{body['conversationId']}/stream")
        self.assertEqual(set(parse_qs(stream.query, keep_blank_values=True)), {"t", "watermark"})
        conversation = f"{base}/conversations/{body['conversationId']}"
        posted = self.call(
            "POST", conversation + "/activities",
            {"type": "message", "from": {"id": "x"}, "text": "hi"}, body["token"],
        )  # fmt: skip
        self.assertEqual(posted.status_code, 200, posted.content)
        listed = self.call("GET", conversation + "/activities?watermark=", None, body["token"])
        self.assertEqual(listed.status_code, 200)
        self.assertIn(posted.json()["id"], [a["id"] for a in listed.json()["activities"]])
        resumed = self.call("GET", conversation + "?watermark=1", None, body["token"])
        self.assertEqual(resumed.status_code, 200)
        self.assertTrue(urlsplit(resumed.json()["streamUrl"]).path.startswith(base + "/"))
        refreshed = self.call("POST", base + "/tokens/refresh", None, body["token"])
        self.assertEqual(refreshed.status_code, 200)

    def test_secret_and_token_of_another_tenant_are_403(self):
        base = seed_base("acme-corp") + "/v3/directline"
        for credential in (self.secret, self.token):
            with self.subTest(credential=credential[:6]):
                response = self.call(
                    "GET", f"{base}/conversations/{self.conversation.id}/activities", None,
                    credential,
                )  # fmt: skip
                self.assertDirectLineError(response, 403, "Forbidden")
        response = self.call("POST", base + "/conversations", {}, self.secret)
        self.assertDirectLineError(response, 403, "Forbidden")
        self.assertEqual(Conversation.objects.filter(tenant=self.named).count(), 0)

    def test_unknown_tenant_in_the_path_is_404(self):
        base = seed_base("nobody") + "/v3/directline"
        response = self.call("POST", base + "/conversations", {}, self.secret)
        self.assertDirectLineError(response, 404, "NotFound")

    def test_tenant_names_past_the_column_or_with_nul_are_404(self):
        for tenant in ("x" * 201, "a%00b"):
            with self.subTest(tenant=tenant[:10]):
                response = self.call("POST", seed_base(tenant) + "/token", {})
                self.assertDirectLineError(response, 404, "NotFound")
                base = seed_base(tenant) + "/v3/directline"
                response = self.call("POST", base + "/conversations", {}, self.secret)
                self.assertDirectLineError(response, 404, "NotFound")

    def test_missing_credentials_are_still_401(self):
        response = self.call("POST", seed_base("tenant-a") + "/v3/directline/conversations", {})
        self.assertDirectLineError(response, 401, "Unauthorized")

    def test_a_slug_shared_by_two_tenants_names_neither(self):
        Tenant.objects.create(name="acme  corp").add_secret()
        base = seed_base("acme-corp") + "/v3/directline"
        response = self.call("POST", base + "/conversations", {}, self.named_secret)
        self.assertDirectLineError(response, 404, "NotFound")
        base = seed_base("Acme%20Corp") + "/v3/directline"
        response = self.call("POST", base + "/conversations", {}, self.named_secret)
        self.assertEqual(response.status_code, 201)

    def test_other_paths_under_the_prefix_are_direct_line_404s(self):
        for path in ("/v3/directline/nothing", "/v3/directline", "", "/oauth/token-exchange",
                     "/token/"):
            with self.subTest(path=path):
                response = self.call("POST", seed_base("tenant-a") + path, {}, self.secret)
                self.assertDirectLineError(response, 404, "NotFound")

    def test_seed_paths_take_the_direct_line_fast_path(self):
        for path in ("/v1/messaging/webchat/a/token", "/v1/web/webchat/a/v3/directline/x",
                     "/v1/messaging/webchat/a"):
            self.assertTrue(is_directline_path(path), path)
        for path in ("/v1/other/webchat/a/token", "/v1/messaging/webchat/", "/v1/messaging/x"):
            self.assertFalse(is_directline_path(path), path)


class TenantSlugTests(TestCase):
    def test_save_keeps_the_slug(self):
        tenant = Tenant.objects.create(name="Zürich Bank / Retail")
        self.assertEqual(tenant.slug, "zurich-bank-retail")
        tenant.name = "Other Name"
        tenant.save(update_fields=["name"])
        tenant.refresh_from_db()
        self.assertEqual(tenant.slug, "other-name")


class StatusTests(SimpleTestCase):
    """``/status`` as the seed answers it, beside /healthz and /readyz (webchat.ops)."""

    async def test_status_answers_as_the_seeds(self):
        app = OpsEndpoints(inner_app)
        status, headers, body = await call(app, "/status")
        self.assertEqual((status, json.loads(body)), (200, {"status": "running"}))
        self.assertEqual(headers[b"content-type"], b"application/json")
        status, _, body = await call(app, "/status", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        status, headers, _ = await call(app, "/status", method="POST")
        self.assertEqual((status, headers[b"allow"]), (405, b"GET, HEAD"))
