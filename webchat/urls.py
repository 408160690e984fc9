"""URLs: the admin and the Direct Line 3.0 REST API (no trailing slashes: APPEND_SLASH=False).

The stream (``conversations/<id>/stream``) is a WebSocket route, in ``webchat/routing.py``.
"""

from django.contrib import admin
from django.urls import path, re_path

from .conf import settings as webchat_settings
from .views import activities, bot_api, conversations, fallback, tokens, uploads

directline = "v3/directline/"

# What Django refuses before any view (e.g. a Host outside ALLOWED_HOSTS): a Direct Line body.
handler400 = "webchat.views.errors.bad_request"

# The admin at WEBCHAT_ADMIN_PATH (webchat/conf.py), or nowhere.
admin_path = webchat_settings.admin_path
admin_urls = [path(admin_path, admin.site.urls)] if admin_path else []

urlpatterns = admin_urls + [
    path(directline + "tokens/generate", tokens.generate_token, name="directline-generate"),
    path(directline + "tokens/refresh", tokens.refresh_token, name="directline-refresh"),
    path(
        directline + "conversations",
        conversations.start_conversation,
        name="directline-conversations",
    ),
    path(
        directline + "conversations/<str:conversation_id>",
        conversations.get_conversation,
        name="directline-conversation",
    ),
    path(
        directline + "conversations/<str:conversation_id>/activities",
        activities.conversation_activities,
        name="directline-activities",
    ),
    path(
        directline + "conversations/<str:conversation_id>/upload",
        uploads.upload,
        name="directline-upload",
    ),
    path(
        directline
        + "conversations/<str:conversation_id>/attachments/<str:attachment_id>/<str:filename>",
        uploads.attachment,
        name="directline-attachment",
    ),
    path(
        directline + "bot/conversations/<str:conversation_id>/activities",
        bot_api.bot_activities,
        name="directline-bot-activities",
    ),
    # Any other path under the prefix, the bare prefix and paths with a newline included
    # (<path:> is ".+", which stops at one): a Direct Line 404, not Django's HTML page.
    re_path(r"^v3/directline(?P<rest>/[\s\S]*)?\Z", fallback.unknown_endpoint,
            name="directline-unknown"),
]

# The demo page (issue 4): /, /demo/token and /demo/webchat.js, served with DEBUG=1 only.
from .views.demo import urlpatterns as demo_urlpatterns  # noqa: E402

urlpatterns += demo_urlpatterns
