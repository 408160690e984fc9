"""ASGI entry point: ``daphne webchat.asgi:application``.

Importing this module sets Django up and, with the Redis backend, checks that Redis answers
(strict startup: daphne exits non-zero rather than serve without its backplane).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")

from webchat.handler import get_asgi_application  # noqa: E402

# Django's handler, minus a thread per Direct Line request (webchat/handler.py).
django_asgi_app = get_asgi_application()

# These imports need Django set up.
from channels.routing import ProtocolTypeRouter  # noqa: E402

from webchat.checks import refuse_broken_settings  # noqa: E402

# A broken WEBCHAT_* setting stops daphne here, not each request that reads it.
refuse_broken_settings()

from notifier.asgi import with_backplane  # noqa: E402
from webchat.forwarded import TrustedProxies  # noqa: E402
from webchat.ops import OpsEndpoints  # noqa: E402
from webchat.routing import websocket_application  # noqa: E402

# OpsEndpoints answers /healthz, /readyz and /metrics before Django (see webchat/ops.py);
# TrustedProxies first resolves the real client behind a proxy (webchat/forwarded.py).
application = with_backplane(
    TrustedProxies(
        OpsEndpoints(
            ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application})
        )
    )
)

# Last, once the code is loaded: keep the long-lived heap out of full GC collections
# (webchat/gc_freeze.py).
from webchat.conf import settings as webchat_settings  # noqa: E402
from webchat.gc_freeze import heap_freezer  # noqa: E402

if webchat_settings.gc_freeze:
    heap_freezer.install()
