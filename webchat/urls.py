"""URLs: the admin and the Direct Line 3.0 REST API (no trailing slashes: APPEND_SLASH=False),
under ``/v3/directline/`` and under the seed's ``/v1/{messaging,web}/webchat/<tenant>/``.

The stream (``conversations/<id>/stream``) is a WebSocket route, in ``webchat/routing.py``.
"""

from django.contrib import admin
from django.urls import include, path, re_path

from .conf import settings as webchat_settings
from .tenant_paths import scoped
from .views import activities, bot_api, conversations, fallback, tenant_token, tokens, uploads

directline = "v3/directline/"

# What Django refuses before any view (e.g. a Host outside ALLOWED_HOSTS): a Direct Line body.
handler400 = "webchat.views.errors.bad_request"

#: The Direct Line API below ``v3/directline/``: (route, view, name).
directline_api = [
    ("tokens/generate", tokens.generate_token, "directline-generate"),
    ("tokens/refresh", tokens.refresh_token, "directline-refresh"),
    ("conversations", conversations.start_conversation, "directline-conversations"),
    ("conversations/<str:conversation_id>", conversations.get_conversation,
     "directline-conversation"),
    ("conversations/<str:conversation_id>/activities", activities.conversation_activities,
     "directline-activities"),
    ("conversations/<str:conversation_id>/upload", uploads.upload, "directline-upload"),
    ("conversations/<str:conversation_id>/attachments/<str:attachment_id>/<str:filename>",
     uploads.attachment, "directline-attachment"),
    ("bot/conversations/<str:conversation_id>/activities", bot_api.bot_activities,
     "directline-bot-activities"),
]  # fmt: skip

#: The seed's layout (webchat/tenant_paths.py): the same views under a tenant's prefix.
tenant_prefix = r"^v1/(?P<surface>messaging|web)/webchat/(?P<tenant>[^/]+)"

# The admin at WEBCHAT_ADMIN_PATH (webchat/conf.py), or nowhere.
admin_path = webchat_settings.admin_path
admin_urls = [path(admin_path, admin.site.urls)] if admin_path else []

urlpatterns = admin_urls + [
    *(path(directline + route, view, name=name) for route, view, name in directline_api),
    # Any other path under the prefix, the bare prefix and paths with a newline included
    # (<path:> is ".+", which stops at one): a Direct Line 404, not Django's HTML page.
    re_path(r"^v3/directline(?P<rest>/[\s\S]*)?\Z", fallback.unknown_endpoint,
            name="directline-unknown"),
    re_path(tenant_prefix + r"/token\Z", scoped(tenant_token.tenant_token), name="seed-token"),
    re_path(
        tenant_prefix + "/" + directline,
        include([path(route, scoped(view), name="seed-" + name)
                 for route, view, name in directline_api]),
    ),
    re_path(tenant_prefix + r"(?P<rest>/[\s\S]*)?\Z", scoped(fallback.unknown_endpoint),
            name="seed-unknown"),
]  # fmt: skip

# The demo page (issue 4): /, /demo/token and /demo/webchat.js, served with DEBUG=1 only.
from .views.demo import urlpatterns as demo_urlpatterns  # noqa: E402

urlpatterns += demo_urlpatterns
