from django.urls import re_path

from .consumer import GatewayConsumer

websocket_urlpatterns = [re_path(r"^ws/v1/?$", GatewayConsumer.as_asgi())]
