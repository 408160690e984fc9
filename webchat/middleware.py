"""Django's middleware, minus a thread hop per hook on the Direct Line API.

In an async request Django runs every hook of a ``MiddlewareMixin`` middleware through
``sync_to_async``: with Django's seven default middleware that is 14 thread hops per
request, ~1.2 ms of CPU of a Direct Line POST here (docs/benchmarks.md). In this module:

* :class:`SecurityMiddleware`, :class:`CommonMiddleware`, :class:`XFrameOptionsMiddleware`:
  Django's, with their hooks run inline, for every request. They only read settings,
  headers and the URLconf: nothing that blocks.
* :class:`SessionMiddleware`, :class:`CsrfViewMiddleware`, :class:`AuthenticationMiddleware`,
  :class:`MessageMiddleware`: Django's for every other request; Direct Line API requests
  (``/v3/directline`` and below, ``webchat.paths``) pass straight through. Those
  endpoints authenticate with ``Authorization: Bearer``, are CSRF-exempt and never read a
  session, a user or a message, so none of these middleware added anything to their
  responses (``tests/test_api_middleware.py`` compares the headers with Django's own stack).

Both lean on ``MiddlewareMixin``'s internals (:mod:`notifier.compat.django`): on a Django
they were not written for, or with ``DEPENDENCY_FAST_PATHS = False``, every one of these
middleware behaves exactly as Django's (decided when the middleware chain is loaded).
"""

from asgiref.sync import sync_to_async
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security

from notifier.compat import django as django_internals

from .paths import is_directline


class HooksInline:
    """Runs ``process_request`` and ``process_response`` on the request's own thread or
    loop, without ``sync_to_async``. Only for hooks that never block."""

    def __init__(self, get_response):
        super().__init__(get_response)
        self._inline = django_internals.fast()

    async def __acall__(self, request):
        if not self._inline:
            return await super().__acall__(request)
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SkipForDirectLine:
    """Passes Direct Line API requests straight to the next layer."""

    def __init__(self, get_response):
        super().__init__(get_response)
        self._skip_directline = django_internals.fast()

    def __call__(self, request):
        if self._skip_directline and is_directline(request):
            # In an async chain this is the next layer's coroutine, awaited by our caller.
            return self.get_response(request)
        return super().__call__(request)


class SecurityMiddleware(HooksInline, security.SecurityMiddleware):
    pass


class CommonMiddleware(HooksInline, common.CommonMiddleware):
    pass


class XFrameOptionsMiddleware(HooksInline, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(SkipForDirectLine, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(SkipForDirectLine, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(SkipForDirectLine, messages.MessageMiddleware):
    pass


class CsrfViewMiddleware(SkipForDirectLine, csrf.CsrfViewMiddleware):
    """Also skips the thread hop of ``process_view`` for Direct Line requests and for views
    marked ``csrf_exempt`` (for which Django's returns None at once)."""

    def __init__(self, get_response):
        super().__init__(get_response)
        if self._skip_directline and self.async_mode:
            # Django adapts process_view once, when it loads the middleware: a coroutine
            # function is awaited as it is, and this one hops only when it has to.
            self.process_view = self._process_view_async

    def process_view(self, request, callback, callback_args, callback_kwargs):
        if self._skip_directline and is_directline(request):
            return None
        return super().process_view(request, callback, callback_args, callback_kwargs)

    async def _process_view_async(self, request, callback, callback_args, callback_kwargs):
        if is_directline(request) or getattr(callback, "csrf_exempt", False):
            return None
        check = sync_to_async(super().process_view, thread_sensitive=True)
        return await check(request, callback, callback_args, callback_kwargs)
