"""ASGI entry point: Django for HTTP, the hub consumer for WebSocket /ws/ (origin + auth checked)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config import daphne_options  # noqa: E402
from consumers.auth import handshake_stack  # noqa: E402
from consumers.routing import websocket_urlpatterns  # noqa: E402

daphne_options.install()
daphne_options.tune_gc()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": handshake_stack(URLRouter(websocket_urlpatterns)),
    }
)
