"""The Direct Line API without per-request threads and middleware thread hops.

webchat/middleware.py and webchat/handler.py change how Django's stack runs, not what it
does: Direct Line responses carry exactly the headers Django's own middleware gave them,
the admin still has its session, CSRF and login, and an API request now costs three thread
hops instead of one per middleware hook plus a thread of its own.
"""

import asyncio
import json
import threading
from unittest import mock

from asgiref.sync import SyncToAsync
from django.contrib.auth.models import User
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.signals import request_finished
from django.test import AsyncClient, SimpleTestCase, TestCase, override_settings

from notifier.compat import asgiref as asgiref_internals
from notifier.compat import django as django_internals
from tests.directline_support import BASE, DirectLineMixin, bearer
from tests.support.fast_paths import fast_path
from webchat.handler import ASGIHandler, path_info
from webchat.paths import is_directline_path

DJANGO_MIDDLEWARE = [
    "webchat.http_metrics.request_metrics",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


class PathTests(SimpleTestCase):
    def test_the_prefix_and_below_only(self):
        for path in ("/v3/directline", "/v3/directline/", "/v3/directline/conversations/x"):
            self.assertTrue(is_directline_path(path), path)
        for path in ("/", "/admin/", "/v3/directlinex", "/v3/direct", "/x/v3/directline/"):
            self.assertFalse(is_directline_path(path), path)

    @override_settings(FORCE_SCRIPT_NAME="/chat")
    def test_the_script_prefix_is_not_part_of_the_path(self):
        scope = {"path": "/chat/v3/directline/tokens/generate", "root_path": ""}
        self.assertEqual(path_info(scope), "/v3/directline/tokens/generate")


class SameResponsesTests(DirectLineMixin, TestCase):
    """Every kind of Direct Line answer, under our middleware and under Django's."""

    def requests(self, client):
        conversation = self.conversation.id
        return [
            ("POST", f"/conversations/{conversation}/activities",
             {"type": "message", "text": "hi"}, self.token),
            ("GET", f"/conversations/{conversation}/activities?watermark=0", None, self.token),
            ("GET", f"/conversations/{conversation}", None, self.secret),
            ("POST", "/tokens/generate", {}, self.secret),
            ("POST", f"/conversations/{conversation}/activities", b"{nope", self.token),
            ("GET", "/tokens/generate", None, self.secret),  # 405
            ("GET", "/no/such/endpoint/", None, None),  # 404
            ("GET", f"/conversations/{conversation}", None, None),  # 401
        ]  # fmt: skip

    def answers(self, client):
        answers = []
        for method, path, body, credential in self.requests(client):
            headers = bearer(credential) if credential else {}
            headers["HTTP_ORIGIN"] = "http://127.0.0.1"
            if method == "POST":
                data = body if isinstance(body, bytes) else json.dumps(body)
                response = client.post(BASE + path, data=data,
                                       content_type="application/json", **headers)
            else:
                response = client.get(BASE + path, **headers)
            answers.append((response.status_code, sorted(response.headers.items()),
                            set(response.cookies)))  # fmt: skip
        return answers

    @override_settings(CORS_ALLOWED_ORIGINS=["http://127.0.0.1"], CORS_ALLOW_ALL_ORIGINS=False)
    def test_headers_status_and_cookies_are_djangos(self):
        ours = self.answers(self.client)
        with override_settings(MIDDLEWARE=DJANGO_MIDDLEWARE):
            theirs = self.answers(self.client)
        # Bodies differ (new ids, tokens, timestamps); headers must not.
        for (status, headers, cookies), (status2, headers2, cookies2) in zip(
            ours, theirs, strict=True
        ):
            self.assertEqual(status, status2)
            self.assertEqual(
                [(k, v) for k, v in headers if k != "Content-Length"],
                [(k, v) for k, v in headers2 if k != "Content-Length"],
            )
            self.assertEqual(cookies, cookies2)
        first = {name.lower(): value for name, value in ours[0][1]}
        self.assertEqual(first["x-frame-options"], "DENY")
        self.assertEqual(first["access-control-allow-origin"], "http://127.0.0.1")


class AdminTests(TestCase):
    """The admin keeps Django's session, CSRF and authentication, sync and async."""

    def setUp(self):
        User.objects.create_superuser("admin", "a@example.com", "pw-for-tests")

    def test_login_needs_the_csrf_token_and_keeps_the_session(self):
        client = self.client_class(enforce_csrf_checks=True)
        page = client.get("/admin/login/")
        self.assertIn("csrftoken", page.cookies)
        refused = client.post("/admin/login/", {"username": "admin", "password": "pw-for-tests"})
        self.assertEqual(refused.status_code, 403)
        token = page.cookies["csrftoken"].value
        done = client.post("/admin/login/?next=/admin/", {
            "username": "admin", "password": "pw-for-tests", "csrfmiddlewaretoken": token,
        })  # fmt: skip
        self.assertEqual(done.status_code, 302)
        self.assertEqual(client.get("/admin/").status_code, 200)

    async def test_async_login_keeps_the_session(self):
        client = AsyncClient(enforce_csrf_checks=True)
        page = await client.get("/admin/login/")
        token = page.cookies["csrftoken"].value
        refused = await client.post("/admin/login/", {"username": "admin", "password": "x"})
        self.assertEqual(refused.status_code, 403)
        done = await client.post("/admin/login/?next=/admin/", {
            "username": "admin", "password": "pw-for-tests", "csrfmiddlewaretoken": token,
        })  # fmt: skip
        self.assertEqual(done.status_code, 302)
        self.assertEqual((await client.get("/admin/")).status_code, 200)


def asgi_request(application, path, method="GET"):
    """One HTTP request through ``application`` in-process; returns the status."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    sent, done = [], asyncio.Event()

    async def receive():
        if not sent:
            sent.append(None)
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    messages = []

    async def send(message):
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    async def run():
        await application(scope, receive, send)
        return messages[0]["status"]

    return run()


@fast_path(asgiref_internals, django_internals)
class HopTests(SimpleTestCase):
    """Thread hops (``sync_to_async`` calls) of one Direct Line request, counted."""

    def hops(self, handler_class, path):
        calls = []
        original = SyncToAsync.__call__

        def counting(self_, *args, **kwargs):
            calls.append(getattr(self_.func, "__qualname__", repr(self_.func)))
            return original(self_, *args, **kwargs)

        with mock.patch.object(SyncToAsync, "__call__", counting):
            status = asyncio.run(asgi_request(handler_class(), path))
        return status, calls

    def test_an_api_request_makes_four_hops_instead_of_one_per_middleware_hook(self):
        path = BASE + "/no/such/endpoint"  # a Direct Line 404, through the whole stack
        status, ours = self.hops(ASGIHandler, path)
        self.assertEqual(status, 404)
        # request_started's receivers, the view on its database thread, Django's log of a
        # 4xx answer (a 200 has none), closing the response.
        self.assertEqual(
            ours,
            ["Signal.asend.<locals>.sync_send", "_kept", "log_response", "HttpResponseBase.close"],
        )
        with override_settings(MIDDLEWARE=DJANGO_MIDDLEWARE):
            status, theirs = self.hops(DjangoASGIHandler, path)
        self.assertEqual(status, 404)
        self.assertGreaterEqual(len(theirs), 16, theirs)


class RequestThreadTests(SimpleTestCase):
    """Under a loop nobody waits for (as daphne's), API requests get no thread of their own;
    other requests still do, as Django makes them."""

    def finishing_threads(self, path, count=4):
        names = []

        def record(**kwargs):
            names.append(threading.current_thread().name)

        request_finished.connect(record)
        self.addCleanup(request_finished.disconnect, record)

        def serve():
            async def requests():
                handler = ASGIHandler()
                return [await asgi_request(handler, path) for _ in range(count)]

            self.statuses = asyncio.run(requests())

        thread = threading.Thread(target=serve)
        thread.start()
        thread.join(30)
        return names

    @fast_path(django_internals)
    def test_api_requests_share_one_sync_thread(self):
        names = self.finishing_threads(BASE + "/no/such/endpoint")
        self.assertEqual(self.statuses, [404] * 4)
        self.assertEqual(len(names), 4)
        self.assertEqual(len(set(names)), 1, names)

    def test_other_requests_get_a_thread_each(self):
        names = self.finishing_threads("/no/such/page")
        self.assertEqual(self.statuses, [404] * 4)
        self.assertEqual(len(set(names)), 4, names)


@override_settings(DEPENDENCY_FAST_PATHS=False)
class PublicPathTests(SimpleTestCase):
    """With the fast paths off (notifier.compat.django) the handler and the middleware are
    Django's: the same thread hops, a thread per request."""

    def test_an_api_request_makes_djangos_hops(self):
        path = BASE + "/no/such/endpoint"
        status, ours = HopTests.hops(self, ASGIHandler, path)
        self.assertEqual(status, 404)
        with override_settings(MIDDLEWARE=DJANGO_MIDDLEWARE):
            status, theirs = HopTests.hops(self, DjangoASGIHandler, path)
        self.assertEqual(status, 404)
        # The view's database work still runs where db_threads sends it (asgiref's public
        # path here too: sync_to_async's thread, one hop either way).
        self.assertEqual(len(ours), len(theirs), (ours, theirs))

    def test_api_requests_get_a_thread_each(self):
        names = RequestThreadTests.finishing_threads(self, BASE + "/no/such/endpoint")
        self.assertEqual(self.statuses, [404] * 4)
        self.assertEqual(len(set(names)), 4, names)


@override_settings(DEPENDENCY_FAST_PATHS=False)
class PublicPathSameResponsesTests(SameResponsesTests):
    pass
