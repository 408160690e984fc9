"""WebSocket routing. Placeholder until the consumer lands (issue 3)."""

from channels.routing import URLRouter

websocket_urlpatterns = []
websocket_application = URLRouter(websocket_urlpatterns)
