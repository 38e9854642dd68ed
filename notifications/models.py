"""The offline path's state: where to wake a device, what was already notified, what failed.

The flow and its decisions are in docs/notifications.md.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q


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

    def as_webpush_info(self) -> dict:
        """The shape pywebpush (and the browser's ``PushSubscription.toJSON()``) uses."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


class NotificationState(models.Model):
    """A member's notified watermark: the highest seq a push decision was taken for.

    A push is *claimed* by raising ``notified_seq`` to the conversation's ``last_seq``; the
    conditional update lets exactly one task win a burst, so concurrent bursts, the sweep and
    a redelivered task never notify the same messages twice. Like the receipt watermarks it
    only moves forward. The sweep looks for members behind (``read_seq < last_seq``) whose
    watermark is behind too: those are the notifications a lost task would have dropped.
    """

    conversation = models.ForeignKey("messaging.Conversation", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    notified_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "user"], name="notificationstate_unique"),
            models.CheckConstraint(condition=Q(notified_seq__gte=0), name="notificationstate_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} notified up to {self.notified_seq} in {self.conversation_id}"


class PushDeadLetter(models.Model):
    """A push that kept failing after its last retry, kept for an operator to retry or discard.

    ``payload`` is what the last attempt sent, without the message text: a retry rebuilds the
    notification from the current state anyway, and a stored body would outlive a moderator's
    removal of the message.
    """

    class Kind(models.TextChoices):
        MESSAGE = "message", "Message"
        CLOSE = "close", "Close"  # read elsewhere
        RETRACT = "retract", "Retract"  # the message shown was removed

    conversation = models.ForeignKey("messaging.Conversation", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Both survive the subscription's deletion (410 later, device removed) as a record.
    subscription = models.ForeignKey(PushSubscription, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="dead_letters")
    device = models.ForeignKey("messaging.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The notified watermark the push was about messages after (see NotificationState).
    after_seq = models.BigIntegerField(default=0)
    payload = models.JSONField(default=dict)
    last_error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} push to user {self.user_id} in {self.conversation_id} ({self.attempts} attempts)"
