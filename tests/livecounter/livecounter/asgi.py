import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livecounter.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from counters.consumers import CounterConsumer  # noqa: E402
from notifier import with_backplane  # noqa: E402

application = with_backplane(ProtocolTypeRouter({
    "http": django_application,
    "websocket": URLRouter([path("ws/counters/<slug:name>", CounterConsumer.as_asgi())]),
}))
