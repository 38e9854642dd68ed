"""Per-device ack cursors. The per-user watermarks live on messaging.Membership.

A device's ack cursor in a conversation is the highest seq it has confirmed receiving with
everything before it. It only moves forward (receipts.watermarks enforces it with GREATEST).
"""
from django.db import models
from django.db.models import Q


class DeviceCursor(models.Model):
    conversation = models.ForeignKey("messaging.Conversation", on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey("messaging.Device", on_delete=models.CASCADE, related_name="cursors")
    ack_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "device"], name="devicecursor_unique"),
            models.CheckConstraint(condition=Q(ack_seq__gte=0), name="devicecursor_ack_nonnegative"),
        ]
        indexes = [models.Index(fields=["device", "conversation"], name="devicecursor_by_device")]

    def __str__(self) -> str:
        return f"device {self.device_id} at {self.ack_seq} in {self.conversation_id}"
