"""HTTP request metrics: a middleware counting requests by route name, method and status.

Labels stay few whatever clients send: the route is the URL pattern's name (e.g.
``directline-activities``), never the path, so ids in URLs do not create series;
``unmatched`` when no pattern matched; methods outside the standard ones count as
``other``. Put it first in ``MIDDLEWARE`` so it sees the status of every response, those
of other middleware included::

    webchat_http_requests_total{route, method, status}
    webchat_http_request_duration_seconds{route}    histogram

``/healthz``, ``/readyz`` and ``/metrics`` are answered before Django (``webchat.ops``) and
are not counted.
"""

import time

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware
from prometheus_client import Counter, Histogram

from .metrics import REGISTRY

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "webchat_http_requests",
    "HTTP requests answered by Django, by route name, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "webchat_http_request_duration_seconds",
    "Seconds Django took to answer, by route name.",
    ["route"],
    registry=REGISTRY,
)


def route_of(request):
    """The low-cardinality name of the route ``request`` matched."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.view_name or match.route or "unnamed"


def _record(request, response, started):
    route = route_of(request)
    method = request.method if request.method in METHODS else "other"
    REQUESTS.labels(route, method, str(response.status_code)).inc()
    DURATION.labels(route).observe(time.perf_counter() - started)


@sync_and_async_middleware
def request_metrics(get_response):
    """Django middleware factory: count each request once its response is ready."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            started = time.perf_counter()
            response = await get_response(request)
            _record(request, response, started)
            return response

    else:

        def middleware(request):
            started = time.perf_counter()
            response = get_response(request)
            _record(request, response, started)
            return response

    return middleware
