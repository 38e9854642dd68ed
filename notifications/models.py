"""Web Push subscriptions: where to wake a device that has no open socket (offline path)."""
from django.db import models


class PushSubscription(models.Model):
    """A browser's Web Push subscription, one per device.

    ``endpoint`` is unique as well: a push service hands one endpoint to one browser profile,
    so when it shows up under another device the older row is stale and is replaced.
    ``p256dh`` and ``auth`` are the subscription's base64url keys (RFC 8291).
    """

    device = models.OneToOneField("messaging.Device", on_delete=models.CASCADE, related_name="push_subscription")
    endpoint = models.URLField(max_length=500, unique=True)
    p256dh = models.CharField(max_length=100)
    auth = models.CharField(max_length=50)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"push subscription of device {self.device_id}"
