"""Devices and their Web Push subscriptions (CONTRACT, "Devices").

A subscription endpoint is parsed here as a URL; where a push may go (https, a known push
service, public addresses) is the use case's rule (notifications.endpoints), and the offline
path checks it again before every attempt.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator, URLValidator
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.devices import do_register_device, do_remove_device
from messaging.models import Device, char_limit
from notifications.models import PushSubscription
from notifications.subscriptions import do_remove_push_subscription, do_save_push_subscription

from .common import AUTH_ERRORS, AuthenticatedRequest, E
from .fields import RequestSerializer, StrictCharField, parse

DEVICE_ID = OpenApiParameter("device_id", {"type": "string", "format": "uuid"}, OpenApiParameter.PATH)


class DeviceCreateSerializer(RequestSerializer):
    name = StrictCharField(max_length=char_limit(Device, "name"), required=False, allow_blank=True)
    platform = StrictCharField(max_length=char_limit(Device, "platform"), required=False, allow_blank=True)


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "name", "platform", "created_at", "last_seen_at"]


class PushEndpointField(StrictCharField):
    """A URL; whether pushes may go there is decided by ``do_save_push_subscription``."""

    default_error_messages = {"invalid_url": "Must be a URL."}
    _validate_url = URLValidator(schemes=["https", "http"])

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", char_limit(PushSubscription, "endpoint"))
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        url = super().to_internal_value(data)
        try:
            self._validate_url(url)
        except DjangoValidationError:
            self.fail("invalid_url")
        return url


class Base64UrlKeyField(StrictCharField):
    """A base64url key (padding optional) that decodes to exactly ``size`` bytes."""

    default_error_messages = {"bad_key": "Must be a base64url encoded {size}-byte key."}
    _ALPHABET = RegexValidator(r"^[A-Za-z0-9_-]+={0,2}$")

    def __init__(self, *, size: int, **kwargs: Any) -> None:
        self.size = size
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            self._ALPHABET(value)  # b64decode would silently skip characters outside it
            decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (DjangoValidationError, binascii.Error, ValueError):
            self.fail("bad_key", size=self.size)
        if len(decoded) != self.size:
            self.fail("bad_key", size=self.size)
        return value


class PushKeysSerializer(serializers.Serializer):
    p256dh = Base64UrlKeyField(size=65, max_length=char_limit(PushSubscription, "p256dh"),
                               help_text="The client's P-256 public key (uncompressed point).")
    auth = Base64UrlKeyField(size=16, max_length=char_limit(PushSubscription, "auth"), help_text="The client's authentication secret.")


class PushSubscriptionSaveSerializer(RequestSerializer):
    """What the browser's `PushSubscription.toJSON()` returns."""

    endpoint = PushEndpointField()
    keys = PushKeysSerializer()


class PushSubscriptionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PushSubscription
        fields = ["device", "endpoint", "created_at", "updated_at"]


class DevicesView(APIView):
    @extend_schema(operation_id="devices_list", responses={200: DeviceSerializer(many=True), **AUTH_ERRORS})
    def get(self, request: AuthenticatedRequest) -> Response:
        # Bounded by PARLEY_MAX_DEVICES_PER_USER.
        devices = Device.objects.filter(user=request.user).order_by("created_at", "id")
        return Response(DeviceSerializer(devices, many=True).data)

    @extend_schema(
        operation_id="devices_create", request=DeviceCreateSerializer,
        responses={201: DeviceSerializer, 400: E, 409: E, **AUTH_ERRORS},
        description="Register a client installation. 409 beyond PARLEY_MAX_DEVICES_PER_USER devices.",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        data = parse(DeviceCreateSerializer, request.data)
        device = do_register_device(user=request.user, name=data.get("name"), platform=data.get("platform"))
        return Response(DeviceSerializer(device).data, status=status.HTTP_201_CREATED)


class DeviceView(APIView):
    @extend_schema(
        operation_id="devices_delete", parameters=[DEVICE_ID], responses={204: None, 404: E, **AUTH_ERRORS},
        description="Remove one of your devices; its open WebSockets close with 4403.",
    )
    def delete(self, request: AuthenticatedRequest, device_id: str) -> Response:
        do_remove_device(user=request.user, device_id=device_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PushSubscriptionView(APIView):
    @extend_schema(
        operation_id="devices_push_subscription_save", parameters=[DEVICE_ID],
        request=PushSubscriptionSaveSerializer,
        responses={201: PushSubscriptionSerializer, 200: PushSubscriptionSerializer, 400: E, 404: E, 409: E,
                   **AUTH_ERRORS},
        description=(
            "Store the device's Web Push subscription (201), or replace it (200). 400 when the endpoint is "
            "not https on a supported push service (PARLEY_PUSH_ALLOWED_HOSTS) resolving to public addresses; "
            "409 when another account's device holds the endpoint (the same account's other device gives it up)."
        ),
    )
    def post(self, request: AuthenticatedRequest, device_id: str) -> Response:
        data = parse(PushSubscriptionSaveSerializer, request.data)
        subscription, created = do_save_push_subscription(
            user=request.user, device_id=device_id, endpoint=data["endpoint"],
            p256dh=data["keys"]["p256dh"], auth=data["keys"]["auth"],
        )
        return Response(PushSubscriptionSerializer(subscription).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(operation_id="devices_push_subscription_delete", parameters=[DEVICE_ID],
                   responses={204: None, 404: E, **AUTH_ERRORS})
    def delete(self, request: AuthenticatedRequest, device_id: str) -> Response:
        do_remove_push_subscription(user=request.user, device_id=device_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
