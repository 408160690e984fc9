"""WebSocket routing: the Direct Line stream, and a 4404 close for any other path."""

from channels.routing import URLRouter
from django.urls import re_path

from .consumers import StreamConsumer, UnknownStreamConsumer

websocket_urlpatterns = [
    re_path(
        r"^v3/directline/conversations/(?P<conversation_id>[^/]+)/stream$",
        StreamConsumer.as_asgi(),
    ),
    # The seed's layout (webchat/tenant_paths.py): the tenant in the path is checked too.
    re_path(
        r"^v1/(?:messaging|web)/webchat/(?P<tenant>[^/]+)"
        r"/v3/directline/conversations/(?P<conversation_id>[^/]+)/stream$",
        StreamConsumer.as_asgi(),
    ),
    re_path(r"", UnknownStreamConsumer.as_asgi()),
]
websocket_application = URLRouter(websocket_urlpatterns)
