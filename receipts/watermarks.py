"""The receipt merge: the one place that moves ack cursors and delivered/read watermarks.

Invariants (CONTRACT "Semantics" 5; docs/architecture.md, "Receipts"):

* Watermarks only move forward. Storage enforces it: every write is
  ``GREATEST(current, proposed)``, so concurrent devices, reordered acks or a stale retry
  can never lower one.
* ``0 <= read_seq <= delivered_seq <= last_seq``. Proposed values are clamped to the
  conversation's ``last_seq`` (which only grows, so a stale read of it only clamps harder),
  and reading raises delivered to at least read; the database checks read <= delivered.
* A user's ``delivered_seq`` is the max over the user's devices' ack cursors (and REST
  ``delivered`` calls): the merge is max, deterministic whatever order devices report in.
* The merge tells its caller whether anything advanced, and only an advance is broadcast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest

from messaging import fanout
from messaging.actions import access_device, access_membership, check_seq
from messaging.errors import NotFound
from messaging.models import Conversation, Membership, User
from notifications import push as offline_push

from .models import DeviceCursor


@dataclass(frozen=True)
class Watermarks:
    delivered_seq: int
    read_seq: int
    advanced: bool


def _greatest_sql() -> str:
    return "MAX" if connection.vendor == "sqlite" else "GREATEST"


def advance_watermarks(membership: Membership, *, delivered: int = 0, read: int = 0) -> Watermarks:
    """Raise a member's watermarks to at least the proposed seqs (clamped); broadcast an advance."""
    conversation = membership.conversation
    read_target = min(read, conversation.last_seq)
    delivered_target = max(min(delivered, conversation.last_seq), read_target)
    advanced = bool(
        Membership.objects.filter(pk=membership.pk)
        .filter(Q(delivered_seq__lt=delivered_target) | Q(read_seq__lt=read_target))
        .update(delivered_seq=Greatest(F("delivered_seq"), delivered_target),
                read_seq=Greatest(F("read_seq"), read_target))
    )
    marks = Membership.objects.filter(pk=membership.pk).values_list("delivered_seq", "read_seq").first()
    if marks is None:  # removed from the conversation since access_membership
        raise NotFound("conversation not found")
    delivered_seq, read_seq = marks
    if advanced:
        fanout.receipt_advanced(
            conversation_id=conversation.pk, user_id=membership.user_id,
            member_count=conversation.member_count, delivered_seq=delivered_seq, read_seq=read_seq,
        )
        if read_target:  # a Web Push shown elsewhere may now be read: close it
            offline_push.read_advanced(conversation_id=conversation.pk, user_id=membership.user_id, read_seq=read_seq)
    return Watermarks(delivered_seq=delivered_seq, read_seq=read_seq, advanced=advanced)


def do_mark_read(*, user: User, conversation_id: Any, seq: Any) -> Watermarks:
    seq = check_seq(seq)
    membership = access_membership(user, conversation_id)
    return advance_watermarks(membership, delivered=seq, read=seq)


def do_mark_delivered(*, user: User, conversation_id: Any, seq: Any, device_id: Any) -> Watermarks:
    """For clients without a socket (woken by a push): the device's cursor and the user's delivered mark."""
    seq = check_seq(seq)
    membership = access_membership(user, conversation_id)
    device = access_device(user, device_id)
    seq = min(seq, membership.conversation.last_seq)
    with transaction.atomic():
        upsert_ack_cursors(device.pk, {membership.conversation_id: seq})
        return advance_watermarks(membership, delivered=seq)


def upsert_ack_cursors(device_id: Any, cursors: Mapping[int, int]) -> None:
    """Raise a device's ack cursors in one statement (GREATEST on conflict: never lowered)."""
    if not cursors:
        return
    table = DeviceCursor._meta.db_table
    greatest = _greatest_sql()
    device_value = device_id.hex if connection.vendor == "sqlite" and hasattr(device_id, "hex") else device_id
    rows = ", ".join(["(%s, %s, %s, CURRENT_TIMESTAMP)"] * len(cursors))
    params: list[Any] = []
    for conversation_id, seq in sorted(cursors.items()):
        params += [conversation_id, device_value, seq]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (conversation_id, device_id, ack_seq, updated_at) VALUES {rows} "
            f"ON CONFLICT (conversation_id, device_id) DO UPDATE SET "
            f"ack_seq = {greatest}({table}.ack_seq, excluded.ack_seq), updated_at = excluded.updated_at",
            params,
        )


def stored_ack_cursors(device_id: Any) -> dict[int, int]:
    return dict(DeviceCursor.objects.filter(device_id=device_id).values_list("conversation_id", "ack_seq"))


def receipts_of(conversation: Conversation) -> list[dict[str, Any]]:
    return [
        {"user": m.user_id, "delivered_seq": m.delivered_seq, "read_seq": m.read_seq}
        for m in Membership.objects.filter(conversation=conversation).order_by("user_id")
    ]


@dataclass(frozen=True)
class AdvancedReceipt:
    conversation_id: int
    user_id: int
    member_count: int
    delivered_seq: int
    read_seq: int


def record_acks(acks: Mapping[tuple[int, Any, int], int]) -> list[AdvancedReceipt]:
    """A gateway process's coalesced acks, ``(user_id, device_id, conversation_id) -> seq``,
    written in one transaction whatever the number of sockets: one read, one cursor upsert,
    one watermark update. Returns the members whose ``delivered_seq`` advanced.

    Same merge as everywhere (module docstring): clamped to ``last_seq``, raised only, and only
    for conversations the user still belongs to (a removed member's late ack is dropped).
    """
    if not acks:
        return []
    users = {user_id for user_id, _, _ in acks}
    conversations = {conversation_id for _, _, conversation_id in acks}
    members = {
        (user_id, conversation_id): (pk, last_seq, member_count)
        for pk, user_id, conversation_id, last_seq, member_count in Membership.objects.filter(
            user_id__in=users, conversation_id__in=conversations
        ).values_list("pk", "user_id", "conversation_id", "conversation__last_seq", "conversation__member_count")
    }
    cursors: dict[tuple[int, Any], int] = {}
    targets: dict[int, int] = {}  # membership pk -> highest clamped ack over its devices
    for (user_id, device_id, conversation_id), seq in acks.items():
        member = members.get((user_id, conversation_id))
        if member is None:
            continue
        pk, last_seq, _ = member
        seq = min(seq, last_seq)
        cursors[(conversation_id, device_id)] = seq
        targets[pk] = max(seq, targets.get(pk, 0))
    if not targets:
        return []
    by_pk = {pk: (user_id, conversation_id, member_count)
             for (user_id, conversation_id), (pk, _, member_count) in members.items()}
    with transaction.atomic():
        _upsert_cursor_rows(cursors)
        advanced = _raise_delivered(targets)
    return [
        AdvancedReceipt(by_pk[pk][1], by_pk[pk][0], by_pk[pk][2], delivered_seq, read_seq)
        for pk, delivered_seq, read_seq in advanced
    ]


def _upsert_cursor_rows(cursors: Mapping[tuple[int, Any], int]) -> None:
    table = DeviceCursor._meta.db_table
    greatest = _greatest_sql()
    rows = ", ".join(["(%s, %s, %s, CURRENT_TIMESTAMP)"] * len(cursors))
    params: list[Any] = []
    for (conversation_id, device_id), seq in sorted(cursors.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        if connection.vendor == "sqlite" and hasattr(device_id, "hex"):
            device_id = device_id.hex
        params += [conversation_id, device_id, seq]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (conversation_id, device_id, ack_seq, updated_at) VALUES {rows} "
            f"ON CONFLICT (conversation_id, device_id) DO UPDATE SET "
            f"ack_seq = {greatest}({table}.ack_seq, excluded.ack_seq), updated_at = excluded.updated_at",
            params,
        )


def _raise_delivered(targets: Mapping[int, int]) -> list[tuple[int, int, int]]:
    """Raise delivered_seq of many memberships in one statement; rows that advanced come back.

    Only rows below their target are touched, so the new value is the target itself, the
    maximum of old and new: the watermark never decreases, and read_seq <= delivered_seq holds.
    """
    table = Membership._meta.db_table
    values = ", ".join(["(%s, %s)"] * len(targets))
    params: list[Any] = []
    for pk, seq in sorted(targets.items()):
        params += [pk, seq]
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH target (id, seq) AS (VALUES {values}) "
            f"UPDATE {table} SET delivered_seq = target.seq FROM target "
            f"WHERE {table}.id = target.id AND {table}.delivered_seq < target.seq "
            f"RETURNING {table}.id, {table}.delivered_seq, {table}.read_seq",
            params,
        )
        return [tuple(row) for row in cursor.fetchall()]
