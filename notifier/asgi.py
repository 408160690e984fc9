"""ASGI glue: strict startup at import, the runtime started on first use, lifespan if offered.

``webchat/asgi.py`` wraps its router with :func:`with_backplane` when it is imported, so a
daphne process with the Redis backend refuses to start (daphne exits non-zero) when Redis
does not answer within about 2 s, instead of serving without its backplane.
"""

import logging

from .runtime import get_runtime

logger = logging.getLogger(__name__)

#: Seconds the strict startup check waits for Redis.
STARTUP_TIMEOUT = 2.0


def with_backplane(application, *, timeout=STARTUP_TIMEOUT):
    """Called once at import of the ASGI module: verify the backplane, wrap ``application``.

    Raises ``ImproperlyConfigured`` (invalid settings, a redis-py below the floor) or
    :class:`~notifier.exceptions.BackplaneUnavailable` (Redis does not answer; the message
    names the URL with its password masked).
    """
    refuse_unsupported_dependencies()
    runtime = get_runtime()
    runtime.notifier.verify(timeout)
    return BackplaneMiddleware(application)


def refuse_unsupported_dependencies():
    """Raise ``ImproperlyConfigured`` with the dependency checks' errors (a redis-py below
    the floor, ``notifier.E020``): servers run no system checks, so a server would start."""
    from django.core.exceptions import ImproperlyConfigured

    from .checks import check_dependencies

    errors = [message for message in check_dependencies() if message.is_serious()]
    if errors:
        raise ImproperlyConfigured(" ".join(
            f"{message.id}: {message.msg} {message.hint or ''}".strip() for message in errors
        ))


class BackplaneMiddleware:
    """Starts the process's runtime on the loop of the first ASGI call.

    daphne and Channels send no lifespan events, so "first use" is the first connection.
    Servers that do send them (uvicorn, hypercorn) get a proper startup and shutdown; the
    inner router, which has no lifespan application, never sees that scope.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.lifespan(receive, send)
        await get_runtime().astart()
        return await self.application(scope, receive, send)

    async def lifespan(self, receive, send):
        """Called once per server process by servers with ASGI lifespan support."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await get_runtime().astart()
                except Exception as exc:
                    logger.exception("backplane startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await get_runtime().aclose()
                except Exception as exc:
                    logger.exception("backplane shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return
