"""Receipt use cases: reads, REST deliveries and a gateway's batched acks move the watermarks.

Invariants (CONTRACT "Semantics" 5; docs/architecture.md, "Receipts"):

* Watermarks only move forward. Storage enforces it: the merge is
  ``Membership.objects.raise_marks`` and ``DeviceCursor.objects.raise_cursors``, one SQL
  statement each, ``GREATEST(current, proposed)``; the send path uses the same merge for the
  sender's own marks.
* ``0 <= read_seq <= delivered_seq <= last_seq``. Proposals are clamped here to the
  conversation's ``last_seq`` (which only grows, so a stale read of it only clamps harder),
  and the merge raises delivered to at least read; the database checks read <= delivered.
* A user's ``delivered_seq`` is the max over the user's devices' ack cursors (and REST
  ``delivered`` calls): the merge is max, deterministic whatever order devices report in.
* Only an advance is broadcast (messaging.fanout.receipt_advanced), and a read that advanced
  is announced (messaging.hooks.read_advanced) so a push it made stale can be closed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from django.db import connection, transaction

from messaging import fanout, hooks
from messaging.access import access_device, access_membership
from messaging.checks import check_seq
from messaging.errors import NotFound
from messaging.models import Conversation, Membership, User

from .models import DeviceCursor


@dataclass(frozen=True)
class Watermarks:
    delivered_seq: int
    read_seq: int
    advanced: bool


def advance_watermarks(membership: Membership, *, delivered: int = 0, read: int = 0) -> Watermarks:
    """Raise a member's watermarks to at least the proposed seqs (clamped); broadcast an advance."""
    conversation = membership.conversation
    read_target = min(read, conversation.last_seq)
    delivered_target = max(min(delivered, conversation.last_seq), read_target)
    advanced = Membership.objects.raise_marks({membership.pk: (delivered_target, read_target)})
    if advanced:
        delivered_seq, read_seq = advanced[membership.pk]
        fanout.receipt_advanced(
            conversation_id=conversation.pk, user_id=membership.user_id,
            member_count=conversation.member_count, delivered_seq=delivered_seq, read_seq=read_seq,
        )
        if read_target:  # a Web Push shown elsewhere may now be read
            hooks.read_advanced.announce(hooks.ReadAdvanced(conversation.pk, membership.user_id, read_seq))
        return Watermarks(delivered_seq=delivered_seq, read_seq=read_seq, advanced=True)
    marks = Membership.objects.filter(pk=membership.pk).values_list("delivered_seq", "read_seq").first()
    if marks is None:  # removed from the conversation since access_membership
        raise NotFound("conversation not found")
    return Watermarks(delivered_seq=marks[0], read_seq=marks[1], advanced=False)


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
        DeviceCursor.objects.raise_cursors({(membership.conversation_id, device.pk): seq})
        return advance_watermarks(membership, delivered=seq)


def receipts_of(conversation: Conversation) -> list[dict[str, int]]:
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
        for pk, user_id, conversation_id, last_seq, member_count in _memberships(users, conversations)
    }
    cursors: dict[tuple[int, Any], int] = {}
    targets: dict[int, tuple[int, int]] = {}  # membership pk -> (highest clamped ack over its devices, no read)
    for (user_id, device_id, conversation_id), seq in acks.items():
        member = members.get((user_id, conversation_id))
        if member is None:
            continue
        pk, last_seq, _ = member
        seq = min(seq, last_seq)
        cursors[(conversation_id, device_id)] = seq
        targets[pk] = (max(seq, targets.get(pk, (0, 0))[0]), 0)
    if not targets:
        return []
    by_pk = {pk: (user_id, conversation_id, member_count)
             for (user_id, conversation_id), (pk, _, member_count) in members.items()}
    with transaction.atomic():
        DeviceCursor.objects.raise_cursors(cursors)
        advanced = Membership.objects.raise_marks(targets)
    return [
        AdvancedReceipt(by_pk[pk][1], by_pk[pk][0], by_pk[pk][2], delivered_seq, read_seq)
        for pk, (delivered_seq, read_seq) in sorted(advanced.items())
    ]


def _memberships(users: set[int], conversations: set[int]) -> list[tuple[int, int, int, int, int]]:
    """``(pk, user_id, conversation_id, last_seq, member_count)`` of the users' memberships in
    the conversations. On PostgreSQL as arrays (``= ANY``): one statement text whatever the
    batch, which psycopg splits once (an ack flush of a large channel names hundreds)."""
    if connection.vendor != "postgresql":
        return list(Membership.objects.filter(user_id__in=users, conversation_id__in=conversations).values_list(
            "pk", "user_id", "conversation_id", "conversation__last_seq", "conversation__member_count"))
    membership, conversation = Membership._meta.db_table, Conversation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.id, m.user_id, m.conversation_id, c.last_seq, c.member_count FROM {membership} m "
            f"JOIN {conversation} c ON c.id = m.conversation_id "
            f"WHERE m.user_id = ANY(%s::bigint[]) AND m.conversation_id = ANY(%s::bigint[])",
            [sorted(users), sorted(conversations)])
        return cursor.fetchall()
