"""ASGI entry point of the relay baseline (daphne bench.relay.asgi:application)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.relay.settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import PersistingRelayConsumer, RelayConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "websocket": URLRouter([
        path("ws/relay/<str:room>/", RelayConsumer.as_asgi()),
        path("ws/relay-persist/<str:room>/", PersistingRelayConsumer.as_asgi()),
    ]),
})
