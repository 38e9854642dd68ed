"""The fan-out policy: the one module that decides how news of a committed write leaves it.

Invariants (docs/architecture.md, "Live path" and "Large channels"):

* Nothing leaves before commit (messaging.layer, messaging.hooks).
* Size decides the path: conversations with fewer than ``PARLEY_LARGE_CHANNEL_THRESHOLD``
  members get one layer event per message, published by the process that stored it
  (direct); larger ones open a batch window of ``PARLEY_BATCH_WINDOW_MS`` and a worker
  publishes one ``conv.messages`` event with the contiguous run stored in it (buffered,
  messaging.tasks). The send path does the same, constant work either way: a cache flag
  and, once per window, an enqueue.
* Receipts go to a conversation's members only below
  ``PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS``; above it only to the reader's own devices.

The use-case functions call the functions below inside their transactions; each publishes
after commit and announces the write to the apps built on the core (messaging.hooks).
"""
from __future__ import annotations

from functools import partial
from typing import Any

from django.conf import settings

from . import hooks, layer, tasks
from .events import (
    MembershipChange,
    ReceiptMarks,
    ReceiptsEvent,
    change_event,
    close_event,
    membership_event,
    message_event,
    receipts_event,
    removed_event,
)
from .payloads import ChangePayload, ConversationPayload, MessagePayload


def is_large(member_count: int) -> bool:
    return member_count >= settings.PARLEY_LARGE_CHANNEL_THRESHOLD


def message_stored(*, message: MessagePayload, member_count: int, write_started: float) -> None:
    """A send is storing ``message`` (its transaction began at ``write_started``,
    ``time.perf_counter()``): once it commits, ring the members' gateways."""
    conversation_id = message["conversation"]
    if is_large(member_count):
        layer.after_commit(partial(tasks.schedule_channel_batch, conversation_id))
    else:
        layer.publish_after_commit(layer.conversation_group(conversation_id), message_event(message))
    hooks.message_stored.announce(hooks.MessageStored(
        conversation_id=conversation_id, seq=message["seq"], member_count=member_count,
        write_started=write_started,
    ))


def message_changed(record: ChangePayload) -> None:
    """A change to a stored message is committing (messaging.changes): ring the members'
    gateways with the record. One event per change whatever the size: a change is rare
    beside the messages, and a large channel's sockets share its serialization per process.

    A deletion or a removal also sends the v1 ``message.removed`` doorbell (clients that
    know no change stream hide the text too) and withdraws the pushes that show it.
    """
    conversation_id = record["conversation"]
    group = layer.conversation_group(conversation_id)
    layer.publish_after_commit(group, change_event(record))
    if record["kind"] in ("deleted", "removed"):
        message = record["message"]
        layer.publish_after_commit(group, removed_event(conversation_id, message["id"], message["seq"]))
        hooks.message_removed.announce(hooks.MessageRemoved(conversation_id, message["id"], message["seq"]))


def membership_changed(*, user_id: int, change: MembershipChange, conversation: ConversationPayload) -> None:
    """The user's sockets follow a conversation joined, left or updated without reconnecting."""
    layer.publish_after_commit(layer.user_group(user_id), membership_event(change, conversation))


def receipt_route(receipts: list[ReceiptMarks], *, member_count: int, conversation_id: int
                  ) -> tuple[str, ReceiptsEvent]:
    """Where the receipts of one conversation go: ``(group, event)``.

    ``receipts`` are the marks that advanced together. One ``conv.receipts`` event on the
    conversation's group carries them all, so a flush that advanced many members costs one
    layer message per gateway, not one per member. Who takes which marks is the gateway's
    part: where receipts are broadcast every member's socket takes every mark; in larger
    conversations (``own_only``) a socket takes only its own user's mark, so a user's other
    devices still clear their badges, and not the mark its own ack caused.
    """
    own_only = member_count > settings.PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS
    return layer.conversation_group(conversation_id), receipts_event(conversation_id, receipts, own_only=own_only)


def receipt_advanced(*, conversation_id: int, user_id: int, member_count: int,
                     delivered_seq: int, read_seq: int) -> None:
    marks: ReceiptMarks = {"user": user_id, "delivered_seq": delivered_seq, "read_seq": read_seq}
    layer.publish_after_commit(*receipt_route([marks], member_count=member_count, conversation_id=conversation_id))


def close_user_sockets(*, user_id: int, code: int) -> None:
    layer.publish_after_commit(layer.user_group(user_id), close_event(code))


def close_device_sockets(*, device_id: Any, code: int) -> None:
    layer.publish_after_commit(layer.device_group(device_id), close_event(code))
