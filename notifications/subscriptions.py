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

    The endpoint must pass :func:`check_push_endpoint` (``Invalid``: https, a known push
    service, public addresses). An endpoint belongs to the device that registered it:

    * under another user's device it is a :class:`Conflict` (409) and nothing changes, since
      registering it must not let anyone delete or re-key someone else's notifications;
    * under another device of the same user it moves here: a browser profile has one
      endpoint, so the older device row is stale (the browser signed in again as a new device),
      and keeping both would push twice per wake-up.
    """
    device = access_device(user, device_id)
    endpoint = check_push_endpoint(endpoint)
    try:
        with transaction.atomic():
            elsewhere = PushSubscription.objects.filter(endpoint=endpoint).exclude(device=device)
            if elsewhere.exclude(device__user=user).exists():
                raise Conflict("this push endpoint is registered to another account")
            # Only the user's own rows: another user's concurrent registration is left to the
            # unique constraint (IntegrityError below), never deleted.
            elsewhere.filter(device__user=user).delete()
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
