"""``/healthz``, ``/readyz``, ``/status`` and ``/metrics``, answered at the ASGI level,
before Django.

They bypass Django's URL routing and middleware on purpose: an orchestrator calls them with
the pod's IP as ``Host``, which ``ALLOWED_HOSTS`` would refuse with a 400; they must answer
even when a middleware is slow or broken; and probes should not count as traffic in the
HTTP metrics. ``webchat/asgi.py`` wraps the router with :class:`OpsEndpoints` inside
:func:`notifier.asgi.with_backplane`, so the first call also starts the backplane.

* ``GET /healthz``: 200 ``{"status": "ok"}`` while the process serves HTTP at all.
* ``GET /readyz``: 200 ``{"status": "ready", "checks": {...}}`` when this replica can serve:
  the database answers ``SELECT 1`` (within 2 s), the backplane is well
  (:func:`notifier.health.backplane_status`) and the stream's catch-up sweeps do not keep
  failing (:meth:`webchat.catch_up.CatchUp.status`). 200 ``{"status": "degraded",
  "degraded": [...], ...}`` through backplane trouble every replica shares (a Redis outage).
  Else 503 ``{"status": "unavailable", "problems": ["database: unavailable", ...],
  "checks": {...}}``. A fresh process waits up to 2 s for its listener's first round trip.
  The reasons (driver errors name hosts and roles, the backplane's its channel and Redis
  errors) are logged at WARNING and shown only to callers ``WEBCHAT_METRICS`` lets read
  ``/metrics``; anyone else gets ``{"ok": bool}`` per check and generic problems.
* ``GET /status``: 200 ``{"status": "running"}``, the seed's liveness answer (greentic-start
  serves it beside its ``/healthz`` and ``/readyz``), for the seed's monitors.
* ``GET /metrics``: the Prometheus text exposition of :data:`webchat.metrics.REGISTRY`, if
  ``WEBCHAT_METRICS`` allows the caller (:mod:`webchat.metrics_access`): 404 when disabled,
  403 JSON when refused.

Only GET and HEAD: anything else is 405 with ``Allow: GET, HEAD``.
"""

import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async
from django.db import connections

from notifier.conf import get_settings
from notifier.health import DEGRADED, wait_until_ready
from notifier.runtime import get_runtime

from . import metrics
from .catch_up import catch_up
from .metrics_access import authorize

logger = logging.getLogger(__name__)

#: Seconds the database check may take.
DATABASE_TIMEOUT = 2.0

_JSON = b"application/json"
_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


def _ping_database(alias="default"):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def database_status(timeout=DATABASE_TIMEOUT):
    """``{"ok": True, "ms": ...}`` when the default database answers, else the reason."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await database_sync_to_async(_ping_database)()
    except TimeoutError:
        return {"ok": False, "reason": f"the database did not answer within {timeout:g} s"}
    except Exception as exc:
        # The first line only: drivers may add the query or a hint on later lines.
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"ok": False, "reason": f"{type(exc).__name__}: {message}"}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}


async def readiness():
    """``(ready, body)`` for ``/readyz``: ready, ready but degraded, or unavailable."""
    database, backplane = await asyncio.gather(
        database_status(), wait_until_ready(get_runtime())
    )
    sweep = catch_up.status(get_settings().readiness_delays[0])
    checks = {"database": database, "backplane": backplane, "catch_up": sweep}
    problems = [f"{name}: {check['reason']}" for name, check in checks.items()
                if not check["ok"]]
    if problems:
        return False, {"status": "unavailable", "problems": problems, "checks": checks}
    if backplane.get("state") == DEGRADED:
        return True, {"status": "degraded", "degraded": [f"backplane: {backplane['degraded']}"],
                      "checks": checks}
    return True, {"status": "ready", "checks": checks}


def public_readiness(body):
    """``body`` without the reasons and details: what anyone may see of ``/readyz`` (the
    status may say ``degraded``, never why)."""
    checks = {name: {"ok": check["ok"]} for name, check in body["checks"].items()}
    public = {"status": body["status"], "checks": checks}
    if "problems" in body:
        public["problems"] = [f"{name}: unavailable" for name, check in checks.items()
                              if not check["ok"]]
    return public


class OpsEndpoints:
    """ASGI middleware: answers the four paths above, passes everything else on."""

    PATHS = frozenset({"/healthz", "/readyz", "/status", "/metrics"})

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.PATHS:
            return await self.application(scope, receive, send)
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            return await _respond(send, 405, _json({"error": f"{method} not allowed"}),
                                  extra=[(b"allow", b"GET, HEAD")], head=False)
        head = method == "HEAD"
        path = scope["path"]
        if path == "/healthz":
            return await _respond(send, 200, _json({"status": "ok"}), head=head)
        if path == "/status":
            return await _respond(send, 200, _json({"status": "running"}), head=head)
        if path == "/readyz":
            ready, body = await readiness()
            if not ready:
                logger.warning("not ready: %s", "; ".join(body["problems"]))
            if authorize(scope) is not None:
                body = public_readiness(body)
            return await _respond(send, 200 if ready else 503, _json(body), head=head)
        refusal = authorize(scope)
        if refusal is not None:
            status, message = refusal
            return await _respond(send, status, _json({"error": message}), head=head)
        return await _respond(send, 200, metrics.render(), content_type=_PROMETHEUS, head=head)


def _json(body):
    return json.dumps(body, separators=(",", ":"), default=str).encode()


async def _respond(send, status, body, *, content_type=_JSON, extra=(), head=False):
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)),
               (b"cache-control", b"no-store"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
