"""Django's ASGI handler, minus a thread per request on the Direct Line API.

Django runs every HTTP request in a ``ThreadSensitiveContext``: the request's sync code
(signal receivers, sync middleware, a sync view) goes to a thread pool made for that
request, so the first of them starts a thread. For a Direct Line request nothing needs
such a thread: its views are async and do their database work on
``webchat.db_threads``, and its middleware run inline (``webchat.middleware``). What is
left, the ``request_started``/``request_finished`` receivers (``close_old_connections``,
with no connection to close) and closing the response, runs on asgiref's one shared sync
thread. That saved ~0.4 ms of CPU per request here (docs/benchmarks.md). Every other
request (the admin, the demo page) is handled exactly as Django does, and so is every
request when Django's internals are not the ones this was written for
(:mod:`notifier.compat.django`, ``DEPENDENCY_FAST_PATHS``).
"""

from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import get_script_prefix

from notifier.compat import django as django_internals

from .paths import is_directline_path


class ASGIHandler(DjangoASGIHandler):
    async def __call__(self, scope, receive, send):
        if (scope["type"] == "http" and django_internals.fast()
                and is_directline_path(path_info(scope))):
            await self.handle(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def path_info(scope) -> str:
    """The request's path less the script prefix, as ``ASGIRequest.path_info`` has it."""
    path, prefix = scope["path"], get_script_prefix(scope)
    return path.removeprefix(prefix) if prefix else path


def get_asgi_application():
    """Like ``django.core.asgi.get_asgi_application``, with this handler."""
    import django

    django.setup(set_prefix=False)
    return ASGIHandler()
