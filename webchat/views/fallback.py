"""Any other path under ``/v3/directline`` (or the seed's tenant prefix): a Direct Line 404
rather than an HTML page."""

from .errors import directline_view, not_found

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


@directline_view(*ALL_METHODS)
def unknown_endpoint(request, rest=""):
    """Called for unrouted paths, e.g. a trailing slash (Direct Line URLs have none)."""
    hint = " Direct Line URLs have no trailing slash." if rest.endswith("/") else ""
    raise not_found(f"No Direct Line endpoint at {request.path[:200]!r}.{hint}")
