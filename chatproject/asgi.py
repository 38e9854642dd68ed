"""ASGI entry point: HTTP goes to Django, /ws/v1/ to the Parley gateway (served by daphne)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware  # noqa: E402

from gateway.routing import websocket_urlpatterns  # noqa: E402
from gateway.sessions import ReadOnlySessionMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Auth, device and Origin checks happen in the consumer's connect, so that each refusal
        # can close with the contract's code (4401 / 4403) instead of a bare HTTP 403. The
        # session is only read there (gateway.sessions).
        "websocket": CookieMiddleware(ReadOnlySessionMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
