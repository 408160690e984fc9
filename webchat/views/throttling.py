"""The Direct Line views' rate limits: one call per limited view, a 429 when refused."""

from webchat.throttle import hit

from .errors import DirectLineError

WHAT = {
    "posts": "activities posted",
    "uploads": "uploads",
    "conversations": "conversations created",
}


def client_ip(request) -> str | None:
    """The connection's address (the forwarded one behind a proxy: daphne --proxy-headers)."""
    return request.META.get("REMOTE_ADDR") or None


def throttle(request, action: str, caller) -> None:
    """Count this request against ``action``'s limits; raise 429 with Retry-After if over."""
    decision = hit(action, caller.tenant_id, client_ip(request), caller.claims)
    if not decision.allowed:
        seconds = decision.retry_after_seconds
        raise DirectLineError(
            429,
            "TooManyRequests",
            f"Too many {WHAT[action]} for this {decision.scope}; retry after {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )
