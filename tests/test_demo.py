"""The demo page and its token endpoint (webchat/views/demo.py), with Django's test client."""

import json
from unittest import mock

from django.test import Client, TestCase, override_settings

from webchat.models import Conversation, Tenant
from webchat.tokens import read_token
from webchat.views import demo


@override_settings(DEBUG=True)
class DemoPageTests(TestCase):
    def setUp(self):
        # The page's own fetch sends the CSRF cookie back as X-CSRFToken: do the same.
        self.client = Client(enforce_csrf_checks=True)

    def csrf_token(self):
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        return response.cookies["csrftoken"].value

    def post_token(self, body=b"{}", csrf=True):
        headers = {"X-CSRFToken": self.csrf_token()} if csrf else {}
        return self.client.post(
            "/demo/token", body, content_type="application/json", headers=headers
        )

    def test_page_loads_the_bundle_and_asks_the_server_for_a_token(self):
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        self.assertIn("/demo/webchat.js?v=4.18.1", html)
        self.assertIn("/demo/token", html)
        self.assertIn("createDirectLine", html)

    def test_token_for_a_new_conversation_of_the_demo_tenant_created_on_first_use(self):
        self.assertFalse(Tenant.objects.filter(name=demo.DEMO_TENANT_NAME).exists())
        response = self.post_token()
        self.assertEqual(response.status_code, 200, response.content)
        body = response.json()
        self.assertEqual(set(body), {"conversationId", "token", "expires_in", "userId"})
        tenant = Tenant.objects.get(name=demo.DEMO_TENANT_NAME)
        conversation = Conversation.objects.get(pk=body["conversationId"])
        self.assertEqual(conversation.tenant, tenant)
        claims = read_token(body["token"])
        self.assertEqual(
            (claims.tenant_id, claims.conversation_id, claims.user_id),
            (str(tenant.pk), conversation.pk, body["userId"]),
        )
        self.assertTrue(body["userId"].startswith("dl_"))
        # A second visitor: same tenant, a new conversation and user.
        again = self.post_token().json()
        self.assertEqual(Tenant.objects.filter(name=demo.DEMO_TENANT_NAME).count(), 1)
        self.assertNotEqual(again["conversationId"], body["conversationId"])
        self.assertNotEqual(again["userId"], body["userId"])

    def test_joining_an_existing_conversation_by_id(self):
        first = self.post_token().json()
        body = json.dumps({"conversationId": first["conversationId"]}).encode()
        joined = self.post_token(body).json()
        self.assertEqual(joined["conversationId"], first["conversationId"])
        self.assertEqual(read_token(joined["token"]).conversation_id, first["conversationId"])

    def test_only_the_demo_tenants_conversations_can_be_joined(self):
        other = Conversation.objects.create(tenant=Tenant.objects.create(name="acme"))
        for conversation_id in (other.pk, "no-such-conversation"):
            with self.subTest(conversation_id):
                body = json.dumps({"conversationId": conversation_id}).encode()
                response = self.post_token(body)
                self.assertEqual(response.status_code, 404)
                self.assertEqual(response.json()["error"]["code"], "NotFound")

    def test_bad_bodies_are_refused_and_write_nothing(self):
        for body in (b"{", b"[]", b'{"conversationId": 5}', b'{"conversationId": ""}'):
            with self.subTest(body):
                response = self.post_token(body)
                self.assertEqual(response.status_code, 400)
                self.assertEqual(response.json()["error"]["code"], "BadArgument")
        self.assertEqual(Conversation.objects.count(), 0)

    def test_token_endpoint_needs_the_csrf_token_and_a_post(self):
        self.assertEqual(self.post_token(csrf=False).status_code, 403)
        self.assertEqual(self.client.get("/demo/token").status_code, 405)
        self.assertEqual(Conversation.objects.count(), 0)

    def test_bundle_is_served_when_installed_and_explained_when_not(self):
        with mock.patch.object(demo, "bundle_path", return_value=None):
            missing = self.client.get("/demo/webchat.js")
            page = self.client.get("/")
        self.assertEqual(missing.status_code, 404)
        self.assertIn("./scripts/serve", page.content.decode())
        self.assertNotIn("/demo/webchat.js", page.content.decode())
        self.assertIsNotNone(demo.bundle_path(), "./scripts/test installs the Web Chat bundle")
        response = self.client.get("/demo/webchat.js")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "text/javascript; charset=utf-8")
        self.assertTrue(b"".join(response.streaming_content).startswith(b"/*! For license"))

    @override_settings(WEBCHAT_DEMO_PEERS=["http://127.0.0.1:8001", "http://testserver/"])
    def test_links_to_the_other_replicas_but_not_to_itself(self):
        html = self.client.get("/").content.decode()
        self.assertIn('data-peer="http://127.0.0.1:8001"', html)
        self.assertNotIn('data-peer="http://testserver"', html)


@override_settings(DEBUG=False)
class DemoOffInProductionTests(TestCase):
    def test_every_demo_url_is_404_and_no_tenant_is_created(self):
        for method, url in (("get", "/"), ("post", "/demo/token"), ("get", "/demo/webchat.js")):
            with self.subTest(url):
                self.assertEqual(getattr(self.client, method)(url).status_code, 404)
        self.assertFalse(Tenant.objects.exists())
