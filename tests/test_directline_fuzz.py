"""No input produces a 5xx: generated bodies, watermarks and credentials (hypothesis)."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from webchat.models import Activity, Conversation, Tenant
from webchat.tokens import issue_token

from .directline_support import BASE, bearer

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
activity_like = st.dictionaries(
    st.sampled_from(["type", "from", "text", "attachments", "channelData", "id", "x"]),
    json_values,
    max_size=6,
)


class NoServerErrorTests(TestCase):
    """Each example runs in its own transaction, with a fresh tenant and conversation."""

    def setup_example(self):
        super().setup_example()
        tenant = Tenant.objects.create(name="fuzz")
        self.conversation = Conversation.objects.create(tenant=tenant)
        self.token = issue_token(tenant.pk, self.conversation.id, "user-1")

    def assertClientAnswer(self, response):
        """A 2xx, or a 4xx with the Direct Line error body: never a 5xx."""
        self.assertLess(response.status_code, 500, response.content[:300])
        body = response.json()
        if response.status_code >= 400:
            self.assertEqual(set(body["error"]), {"code", "message"})
        return body

    @FUZZ
    @given(body=st.one_of(json_values, activity_like))
    def test_posted_json_values(self, body):
        before = Activity.objects.count()
        response = self.client.post(
            f"{BASE}/conversations/{self.conversation.id}/activities",
            data=json.dumps(body),
            content_type="application/json",
            **bearer(self.token),
        )
        self.assertClientAnswer(response)
        written = Activity.objects.count() - before
        self.assertEqual(written, 1 if response.status_code == 200 else 0)
        if response.status_code == 200:
            stored = Activity.objects.latest("sequence").data
            self.assertEqual(stored["from"]["role"], "user")
            if isinstance(body, dict) and "channelData" in body:
                self.assertEqual(stored["channelData"], body["channelData"])

    @FUZZ
    @given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def test_posted_bytes(self, raw):
        before = Activity.objects.count()
        response = self.client.post(
            f"{BASE}/conversations/{self.conversation.id}/activities",
            data=raw,
            content_type="application/json",
            **bearer(self.token),
        )
        self.assertClientAnswer(response)
        if response.status_code != 200:
            self.assertEqual(Activity.objects.count(), before)

    @FUZZ
    @given(watermark=st.text(max_size=30))
    def test_watermarks(self, watermark):
        response = self.client.get(
            f"{BASE}/conversations/{self.conversation.id}/activities",
            {"watermark": watermark},
            **bearer(self.token),
        )
        body = self.assertClientAnswer(response)
        if response.status_code == 200:
            self.assertEqual(body["watermark"], "0")

    @FUZZ
    @given(header=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=80))
    def test_authorization_headers(self, header):
        response = self.client.post(
            BASE + "/conversations",
            json.dumps({}),
            content_type="application/json",
            HTTP_AUTHORIZATION=header,
        )
        self.assertIn(response.status_code, {401, 403})
        self.assertClientAnswer(response)
