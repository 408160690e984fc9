"""Helpers shared by the Direct Line REST tests: tenants, credentials, requests."""

import json
import time

import jwt

from webchat.models import Activity, Conversation, Tenant
from webchat.tokens import ALGORITHM, ISSUER, issue_token, signing_key

BASE = "/v3/directline"


def bearer(credential: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {credential}"}


def expired_token(tenant_id, conversation_id: str, user_id: str = "u1") -> str:
    """A token signed with the real key whose ``exp`` has passed."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "tid": str(tenant_id),
        "conv": conversation_id,
        "user": user_id,
        "iat": now - 3600,
        "exp": now - 60,
    }
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM)


class DirectLineMixin:
    """Two tenants (A and B) with a secret each, and a conversation with a token in A."""

    def setUp(self):
        super().setUp()
        self.tenant = Tenant.objects.create(name="tenant-a")
        self.secret = self.tenant.add_secret()
        self.other_tenant = Tenant.objects.create(name="tenant-b")
        self.other_secret = self.other_tenant.add_secret()
        self.conversation = Conversation.objects.create(tenant=self.tenant)
        self.token = issue_token(self.tenant.pk, self.conversation.id, "user-1", "Ann")

    def post_json(self, path, body, credential=None, **extra):
        headers = bearer(credential) if credential else {}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.client.post(
            BASE + path, data=data, content_type="application/json", **headers, **extra
        )

    def get(self, path, credential=None, **extra):
        headers = bearer(credential) if credential else {}
        return self.client.get(BASE + path, **headers, **extra)

    def assertDirectLineError(self, response, status, code=None):
        """The response is a Direct Line error body with ``status`` (and ``code``)."""
        self.assertEqual(response.status_code, status, response.content[:300])
        body = response.json()
        self.assertEqual(set(body), {"error"})
        self.assertEqual(set(body["error"]), {"code", "message"})
        self.assertTrue(body["error"]["message"])
        if code is not None:
            self.assertEqual(body["error"]["code"], code)
        return body["error"]

    def activity_count(self) -> int:
        return Activity.objects.count()
