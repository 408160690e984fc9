"""Direct Line error bodies, and the decorator that turns every failure into one.

The client acts on the status code (``../shared/directline.md``): 401 missing credentials,
403 forbidden or expired (code ``TokenExpired``), 404 no such conversation, 4xx bad input.
A polling client stops for good on any other error, so a view never lets an exception
escape as Django's HTML 500 page.
"""

import functools
import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from webchat.db_threads import read_retried
from webchat.paths import is_directline

from .threads import api_threads

logger = logging.getLogger(__name__)

#: Methods whose views only read: retried on a fresh connection (``read_retried``).
_READS = frozenset({"GET", "HEAD"})


class DirectLineError(Exception):
    """A request the service refuses: ``status``, Direct Line ``code`` and a message.

    The message names the offending thing and, where there is one, the fix. It is sent to
    the client and logged, so it must never contain a secret or a token.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        #: Extra response headers, e.g. ``Retry-After`` of a 429.
        self.headers = headers or {}


def bad_argument(message: str) -> DirectLineError:
    return DirectLineError(400, "BadArgument", message)


def missing_property(message: str) -> DirectLineError:
    return DirectLineError(400, "MissingProperty", message)


def not_found(message: str) -> DirectLineError:
    return DirectLineError(404, "NotFound", message)


def forbidden(message: str) -> DirectLineError:
    return DirectLineError(403, "Forbidden", message)


def too_large(message: str) -> DirectLineError:
    return DirectLineError(413, "MessageSizeTooBig", message)


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def directline_view(*methods: str):
    """Make a view a Direct Line endpoint answering ``methods``.

    Called around each request: refuses other methods with 405, turns a DirectLineError
    into its error body (logged at INFO, path only: the query may carry a token), and any
    other exception into a logged 500 ServiceError body. Bearer endpoints carry no CSRF
    cookie, so they are CSRF-exempt.

    The endpoint is async: the sync view runs on one of :data:`api_threads`, whose
    database connections stay open between requests, rather than on a new thread with a
    new connection per request (``webchat.db_threads``).
    """
    allowed = frozenset(methods)

    def decorate(view):
        def answer(request, *args, **kwargs):
            if request.method not in allowed:
                logger.info("Direct Line %s %s refused: 405", request.method, request.path)
                response = error_response(
                    405,
                    "MethodNotAllowed",
                    f"{request.method} is not allowed here; use {' or '.join(sorted(allowed))}.",
                )
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            try:
                try:
                    if request.method in _READS:
                        # A read that lost its database connection is tried once more.
                        return read_retried(view, request, *args, **kwargs)
                    return view(request, *args, **kwargs)
                except RequestDataTooBig as exc:
                    raise too_large("The request is too large.") from exc
                except (SuspiciousOperation, MultiPartParserError) as exc:
                    # Django's request parsing refusing e.g. too many fields, a broken
                    # multipart body or an unsafe file name: the client's fault, not ours.
                    raise bad_argument(f"The request cannot be parsed: {exc}") from exc
            except DirectLineError as exc:
                logger.info(
                    "Direct Line %s %s refused: %s %s: %s",
                    request.method,
                    request.path,
                    exc.status,
                    exc.code,
                    exc.message,
                )
                response = error_response(exc.status, exc.code, exc.message)
                for header, value in exc.headers.items():
                    response[header] = value
                return response
            except Exception:
                logger.exception("Direct Line %s %s failed", request.method, request.path)
                return error_response(
                    500, "ServiceError", "The service failed to handle the request; retry later."
                )

        @functools.wraps(view)
        async def endpoint(request, *args, **kwargs):
            return await api_threads.run(answer, request, *args, **kwargs)

        return csrf_exempt(endpoint)

    return decorate


def bad_request(request, exception):
    """Django's ``handler400``: called for what Django refuses before any view runs (a Host
    outside ALLOWED_HOSTS, a SuspiciousOperation in a middleware). Direct Line clients get
    the error body; other paths Django's own page. Django has already logged the cause
    (``django.security``); the message does not echo the offending input."""
    if is_directline(request):
        return error_response(
            400,
            "BadArgument",
            "The request was refused before it reached the service "
            "(e.g. a Host header this service does not serve).",
        )
    return defaults.bad_request(request, exception)
