"""The seed service's URL layout, served beside ours by the same views.

greentic-start serves Direct Line under ``/v1/messaging/webchat/<tenant>/`` and
``/v1/web/webchat/<tenant>/``: ``v3/directline/...`` (the stream included) and ``token``.
``<tenant>`` is the tenant's name as given to ``create_tenant`` (percent-encoded), or its
slug (``Tenant.slug``). The credential decides the tenant, as on ``/v3/directline``; the
path only has to agree with it: a tenant that does not exist is a 404, another tenant's
credential a 403.
"""

import functools
from urllib.parse import quote

from django.views.decorators.csrf import csrf_exempt

from .models import Tenant


def resolve_tenant(segment: str):
    """The id of the tenant named ``segment`` or, failing that, the one tenant whose slug it
    is; None if there is none (or several share the slug: then only their names work)."""
    if len(segment) > Tenant._meta.get_field("name").max_length or "\x00" in segment:
        return None
    ids = list(Tenant.objects.filter(name=segment).values_list("pk", flat=True)[:1])
    if not ids:
        ids = list(Tenant.objects.filter(slug=segment).values_list("pk", flat=True)[:2])
    return ids[0] if len(ids) == 1 else None


def tenant_matches(segment: str, tenant_id) -> bool:
    """Whether the path's ``segment`` names the tenant ``tenant_id`` (its name or slug)."""
    row = Tenant.objects.filter(pk=tenant_id).values_list("name", "slug").first()
    if row is None:
        return False
    name, slug = row
    return segment == name or (segment == slug and resolve_tenant(segment) == int(tenant_id))


def scoped(view):
    """``view`` under ``/v1/<surface>/webchat/<tenant>/``: note the path's tenant and the
    base of URLs handed back (streamUrl, contentUrl), so the client stays on this layout."""

    @functools.wraps(view)
    async def in_tenant_path(request, *args, surface, tenant, **kwargs):
        request.path_tenant = tenant
        request.directline_base = (
            f"/v1/{surface}/webchat/{quote(tenant, safe='')}/v3/directline"
        )
        return await view(request, *args, **kwargs)

    return csrf_exempt(in_tenant_path)


def directline_base(request) -> str:
    """The path under which this request reached the Direct Line API."""
    return getattr(request, "directline_base", "/v3/directline")


def path_tenant_refusal(segment: str, tenant_id):
    """For the stream: None if ``segment`` names the token's tenant, else the close code and
    reason (4404 no such tenant, 4403 another tenant). Runs on a database thread."""
    if tenant_matches(segment, tenant_id):
        return None
    if resolve_tenant(segment) is None:
        return 4404, "no such tenant in the path"
    return 4403, "token for another tenant than the path's"
