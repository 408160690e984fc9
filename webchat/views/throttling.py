"""The Direct Line views' rate limits and upload quota: one call per view, 429 or 413."""

from webchat import quota
from webchat.throttle import hit

from .errors import DirectLineError

WHAT = {
    "posts": "activities posted",
    "uploads": "uploads",
    "conversations": "conversations created",
}


def client_ip(request) -> str | None:
    """The client's address: behind a trusted proxy, the forwarded one (webchat/forwarded.py)."""
    return request.META.get("REMOTE_ADDR") or None


def throttle(request, action: str, caller) -> None:
    """Count this request against ``action``'s limits; raise 429 with Retry-After if over."""
    throttle_tenant(request, action, caller.tenant_id, caller.claims)


def throttle_tenant(request, action: str, tenant_id, claims=None) -> None:
    """:func:`throttle` for a caller known only by its tenant (the seed's public token)."""
    decision = hit(action, tenant_id, client_ip(request), claims)
    if not decision.allowed:
        seconds = decision.retry_after_seconds
        raise DirectLineError(
            429,
            "TooManyRequests",
            f"Too many {WHAT[action]} for this {decision.scope}; retry after {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )


def upload_bytes(files) -> int:
    return sum(file.size for file in files)


def reserve_upload(caller, files) -> None:
    """Count the files against the tenant's upload quota; raise 413 ``QuotaExceeded`` if over.

    413, not 429: waiting does not help, only deleting (retention) does, so a client must
    not retry the same upload.
    """
    size = upload_bytes(files)
    refused_by = quota.reserve(caller.tenant_id, size)
    if refused_by is not None:
        raise DirectLineError(
            413,
            "QuotaExceeded",
            f"The tenant's upload storage quota ({refused_by} bytes) is used up: this "
            f"upload ({size} bytes) does not fit. Old uploads are deleted by retention.",
        )


def release_upload(caller, files) -> None:
    """Give back what :func:`reserve_upload` counted (the upload failed)."""
    quota.release(caller.tenant_id, upload_bytes(files))
