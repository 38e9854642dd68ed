"""The offline path's state: where to wake a device, what was already notified, what failed.

The flow and its decisions are in docs/notifications.md.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q


class PushKind(models.TextChoices):
    MESSAGE = "message", "Message"
    CLOSE = "close", "Close"  # read elsewhere
    RETRACT = "retract", "Retract"  # the message shown was removed


class PushSubscription(models.Model):
    """A browser's Web Push subscription, one per device.

    ``endpoint`` is unique as well: a push service hands one endpoint to one browser profile.
    It belongs to the device that registered it: another user's registration of it is refused;
    the same user's registration under another device moves it (notifications.subscriptions).
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

    Kind = PushKind

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


class PendingPush(models.Model):
    """A push decided and not finished yet: the offline path's outbox (docs/notifications.md,
    "Unfinished pushes").

    Written in the transaction that decides the push (a member's claim, a read's close, a
    removal's retraction, an operator's retry of a dead letter) and deleted when an attempt
    ends it: sent, subscription gone, dead letter, or nothing left to send. An attempt holds
    it under a lease (``lease_until``); the sweep hands out again whatever is still here after
    its lease ran out (a worker killed mid-push, a task the broker lost or holds) under a new
    ``token``, so the old task, should the broker deliver it after all, finds the push no
    longer its own and does nothing. ``attempts`` counts attempts across hand-outs, so the
    retry budget holds whichever task runs them.
    """

    subscription = models.ForeignKey(PushSubscription, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey("messaging.Conversation", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=PushKind.choices)
    after_seq = models.BigIntegerField(default=0)
    token = models.BigIntegerField()
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscription", "conversation", "kind", "after_seq"],
                                    name="pendingpush_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} push to subscription {self.subscription_id} in {self.conversation_id}"


class VapidKeyPair(models.Model):
    """The VAPID key pair generated for this deployment when none is configured
    (notifications.vapid): one row, made the first time a push or a browser needs it.

    The private key signs every push: whoever reads this table can send pushes to Parley's
    subscribers (they still need the subscriptions' keys to say anything). Configure
    ``PARLEY_VAPID_*`` instead where that matters; replacing the pair makes every stored
    subscription fail (403) until browsers subscribe again.
    """

    THE_ONE = 1

    public_key = models.CharField(max_length=100)
    private_key = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"VAPID key pair {self.public_key[:12]}… (generated {self.created_at:%Y-%m-%d})"
