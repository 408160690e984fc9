"""``/v1/{messaging,web}/webchat/<tenant>/token``: the seed's token endpoint.

The seed's page asks it for a token before it starts Direct Line. With the tenant's secret
(``Authorization: Bearer <secret>``) it is ``tokens/generate`` for the tenant of the path:
a new conversation and a token for it, ``{conversationId, token, expires_in}``. Without a
credential it answers only for the tenants listed in ``WEBCHAT_SEED["PUBLIC_TOKEN_TENANTS"]``
(the seed answers for every tenant: anyone who reaches it starts conversations). GET is
taken as POST, as the seed does.
"""

from webchat.conf import settings
from webchat.models import Tenant
from webchat.tenant_paths import resolve_tenant

from .auth import authenticate, no_such_tenant, require_secret
from .errors import DirectLineError, directline_view, not_found
from .throttling import throttle, throttle_tenant
from .tokens import new_conversation_token


@directline_view("GET", "POST")
def tenant_token(request):
    """Called by the seed's Web Chat page (or its backend) for a conversation's token."""
    if "Authorization" in request.headers:
        caller = authenticate(request)  # the path's tenant must be the secret's
        require_secret(caller, "The token endpoint")
        throttle(request, "conversations", caller)
        return new_conversation_token(request, caller.tenant_id)
    tenant_id = resolve_tenant(request.path_tenant)
    if tenant_id is None:
        raise not_found(no_such_tenant(request.path_tenant))
    name, slug = Tenant.objects.filter(pk=tenant_id).values_list("name", "slug").get()
    if not {name, slug} & settings.public_token_tenants:
        raise DirectLineError(
            401,
            "Unauthorized",
            "Missing Authorization header: send 'Bearer <tenant secret>' (tokens without one "
            'only for tenants in WEBCHAT_SEED["PUBLIC_TOKEN_TENANTS"]).',
        )
    throttle_tenant(request, "conversations", tenant_id)
    return new_conversation_token(request, tenant_id)
