"""Which requests belong to the Direct Line REST API (importable before Django is set up).

Two layouts reach the same views: ours, ``/v3/directline/...``, and the seed service's
(greentic-start), ``/v1/{messaging,web}/webchat/<tenant>/...`` (``v3/directline/...`` and
``token`` below it; ``webchat.tenant_paths``).
"""

import re

DIRECTLINE_PREFIX = "/v3/directline"

#: The seed's layout: ``/v1/messaging/webchat/<tenant>`` or ``/v1/web/webchat/<tenant>``.
TENANT_PREFIX = re.compile(r"/v1/(?:messaging|web)/webchat/[^/]+")


def is_directline_path(path_info: str) -> bool:
    """Whether a path (without the script prefix) is ``/v3/directline`` or below it, or
    anything under the seed's ``/v1/{messaging,web}/webchat/<tenant>``."""
    if path_info.startswith(DIRECTLINE_PREFIX):
        return len(path_info) == len(DIRECTLINE_PREFIX) or path_info[len(DIRECTLINE_PREFIX)] == "/"
    if path_info.startswith("/v1/"):
        match = TENANT_PREFIX.match(path_info)
        return match is not None and (
            match.end() == len(path_info) or path_info[match.end()] == "/"
        )
    return False


def is_directline(request) -> bool:
    return is_directline_path(request.path_info)
