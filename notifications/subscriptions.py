"""Web Push subscription use cases (docs/notifications.md, "Subscriptions").

The REST edge parses the shape (a URL, base64url keys); the rules for where a push may go are
checked here (notifications.endpoints), so every caller gets them.
"""
from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from messaging.access import access_device
from messaging.errors import Conflict, NotFound
from messaging.models import User

from .endpoints import check_push_endpoint
from .models import PushSubscription


def do_save_push_subscription(*, user: User, device_id: Any, endpoint: str, p256dh: str,
                              auth: str) -> tuple[PushSubscription, bool]:
    """Store or replace the subscription of one of the user's devices; ``(subscription, created)``.

    An endpoint belongs to one browser profile, so the same endpoint under another device is
    stale and goes: one push per wake-up, never two.
    """
    device = access_device(user, device_id)
    endpoint = check_push_endpoint(endpoint)
    try:
        with transaction.atomic():
            PushSubscription.objects.filter(endpoint=endpoint).exclude(device=device).delete()
            return PushSubscription.objects.update_or_create(
                device=device, defaults={"endpoint": endpoint, "p256dh": p256dh, "auth": auth}
            )
    except IntegrityError:  # the same endpoint registered concurrently under another device
        raise Conflict("this push endpoint is being registered by another device; retry") from None


def do_remove_push_subscription(*, user: User, device_id: Any) -> None:
    device = access_device(user, device_id)
    deleted, _ = PushSubscription.objects.filter(device=device).delete()
    if not deleted:
        raise NotFound("this device has no push subscription")
