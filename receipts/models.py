"""Per-device ack cursors. The per-user watermarks live on messaging.Membership.

A device's ack cursor in a conversation is the highest seq it has confirmed receiving with
everything before it. It only moves forward: :meth:`DeviceCursorManager.raise_cursors` is
the one writer, and it writes ``GREATEST``.
"""
from __future__ import annotations

from typing import Any, Mapping
from uuid import UUID

from django.db import connection, models
from django.db.models import Q

from messaging.models import greatest_sql


class DeviceCursorManager(models.Manager["DeviceCursor"]):
    def raise_cursors(self, cursors: Mapping[tuple[int, Any], int]) -> None:
        """Raise ack cursors, ``(conversation_id, device_id) -> seq``, in one statement.

        An upsert whose conflict branch keeps ``GREATEST(stored, proposed)``: a stale or
        reordered ack never lowers a cursor. Rows are written in key order, so two batches
        touching the same cursors lock them in the same order.
        """
        if not cursors:
            return
        table = self.model._meta.db_table
        device_id = self.model._meta.get_field("device").target_field
        greatest = greatest_sql()
        ordered = [(conversation_id, device_id.get_db_prep_value(device, connection), seq) for (conversation_id, device), seq
                   in sorted(cursors.items(), key=_key_order)]
        params: list[Any]
        if connection.vendor == "postgresql":
            # Arrays: one statement text whatever the batch size (see MembershipManager.raise_marks).
            params = [[row[0] for row in ordered], [row[1] for row in ordered], [row[2] for row in ordered]]
            rows = "SELECT c, d, s, CURRENT_TIMESTAMP FROM unnest(%s::bigint[], %s::uuid[], %s::bigint[]) AS u (c, d, s)"
        else:
            params = [value for row in ordered for value in row]
            rows = "VALUES " + ", ".join(["(%s, %s, %s, CURRENT_TIMESTAMP)"] * len(ordered))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (conversation_id, device_id, ack_seq, updated_at) {rows} "
                f"ON CONFLICT (conversation_id, device_id) DO UPDATE SET "
                f"ack_seq = {greatest}({table}.ack_seq, excluded.ack_seq), updated_at = excluded.updated_at",
                params,
            )

    def of_device(self, device_id: Any) -> dict[int, int]:
        """The device's stored cursors: conversation id -> ack seq."""
        return dict(self.filter(device_id=device_id).values_list("conversation_id", "ack_seq"))


class DeviceCursor(models.Model):
    conversation = models.ForeignKey("messaging.Conversation", on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey("messaging.Device", on_delete=models.CASCADE, related_name="cursors")
    ack_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DeviceCursorManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "device"], name="devicecursor_unique"),
            models.CheckConstraint(condition=Q(ack_seq__gte=0), name="devicecursor_ack_nonnegative"),
        ]
        indexes = [models.Index(fields=["device", "conversation"], name="devicecursor_by_device")]

    def __str__(self) -> str:
        return f"device {self.device_id} at {self.ack_seq} in {self.conversation_id}"


def _key_order(item: tuple[tuple[int, Any], int]) -> tuple[int, int]:
    """(conversation, device) in the order of the device's UUID text, which is its number's
    order; comparing numbers spares formatting every UUID of a large channel's ack batch."""
    (conversation_id, device), _ = item
    return conversation_id, (device if isinstance(device, UUID) else UUID(str(device))).int
