"""The fan-out policy: the one module that decides how an event leaves a committed transaction.

Invariants (docs/architecture.md, "Fan-out"):

* Nothing leaves before commit. Every event is scheduled with ``transaction.on_commit``;
  a rolled-back transaction sends nothing. ``after_commit`` serializes the event when it is
  scheduled, so a payload that cannot be sent fails the request, not a later callback.
* The channel layer is a doorbell, not a mailbox: a lost event is repaired by the gateway's
  gap fill and by replay from PostgreSQL. A failure to publish never fails a stored send.
* Size decides the path: conversations with fewer than ``PARLEY_LARGE_CHANNEL_THRESHOLD``
  members get one layer event per message, published by the process that stored it
  (direct); larger ones open a batch window of ``PARLEY_BATCH_WINDOW_MS`` and a worker
  publishes one ``conv.messages`` event with the contiguous run stored in it (buffered).
  The send path does the same, constant work either way: a cache flag and, once per
  window, an enqueue.

Group shape: a conversation's group holds one channel per *gateway process* that has a
member online, not one per socket; the gateway dispatches locally to its sockets. A send
therefore costs one layer message per gateway, whatever the member count. User- and
device-addressed events (own-device receipts, membership changes, forced closes) go to
small per-user and per-device groups of socket channels.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from notifications import push as offline_push

logger = logging.getLogger(__name__)


def conversation_group(conversation_id: int) -> str:
    return f"conv.{conversation_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def device_group(device_id: Any) -> str:
    return f"device.{str(device_id).replace('-', '')}"


def is_large(member_count: int) -> bool:
    return member_count >= settings.PARLEY_LARGE_CHANNEL_THRESHOLD


def _publish(group: str, event: dict[str, Any]) -> None:
    # The gateway hub holds one channel per process and routes by the group named here.
    # published_at (right after commit for after-commit events) times the fan-out dispatch.
    event = {**event, "group": group, "published_at": time.time()}
    try:
        async_to_sync(get_channel_layer().group_send)(group, event)
    except Exception as error:  # noqa: BLE001 - the store has it; replay repairs a lost doorbell
        # One line, no traceback: during a Redis outage every send lands here.
        logger.warning("fan-out publish to %s failed (%s); gap fill and replay will repair", group, error)


def after_commit(action: Callable[[], None]) -> None:
    """Run ``action`` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(action, robust=True)


def publish_after_commit(group: str, event: dict[str, Any]) -> None:
    json.dumps(event)  # fail now, inside the request, if the payload cannot travel
    after_commit(lambda: _publish(group, event))


# --- What the use-case functions call ----------------------------------------------------

def message_stored(*, conversation_id: int, seq: int, member_count: int, payload: dict[str, Any]) -> None:
    if is_large(member_count):
        after_commit(lambda: schedule_channel_batch(conversation_id))
    else:
        publish_after_commit(
            conversation_group(conversation_id),
            {"type": "conv.message", "conversation": conversation_id, "seq": seq, "message": payload},
        )
    # Members with no online device: a coalesced Web Push, decided by a task after commit.
    offline_push.message_stored(conversation_id=conversation_id)


def _batch_pending_key(conversation_id: int) -> str:
    return f"parley:batch-pending:{conversation_id}"


def schedule_channel_batch(conversation_id: int) -> None:
    """Open a batch window for a large channel unless one is already open.

    The pending flag is cleared by the batch task *before* it reads the store, so a message
    committed after that read opens a new window: none is stranded. The flag expires on its
    own, so a lost task only delays delivery until the next message or the gateways' tail
    check, never loses it.
    """
    window = settings.PARLEY_BATCH_WINDOW_MS / 1000
    try:
        opened = cache.add(_batch_pending_key(conversation_id), 1, timeout=max(5, int(window * 20)))
    except Exception:  # noqa: BLE001 - cache down: send a batch for this message alone
        logger.warning("batch window flag unavailable; flushing at once", exc_info=True)
        opened, window = True, 0
    if not opened:
        return
    from messaging.tasks import flush_channel_batch

    try:
        flush_channel_batch.apply_async((conversation_id,), countdown=window)
    except Exception:  # noqa: BLE001 - broker down: the gateways' tail check repairs
        logger.warning("could not enqueue the batch of conversation %s", conversation_id, exc_info=True)


def batch_window_closed(conversation_id: int) -> None:
    cache.delete(_batch_pending_key(conversation_id))


def publish_batch(*, conversation_id: int, messages: list[dict[str, Any]]) -> None:
    """One ``conv.messages`` event carrying a contiguous run, serialized once for every member."""
    _publish(conversation_group(conversation_id), {
        "type": "conv.messages", "conversation": conversation_id,
        "first_seq": messages[0]["seq"], "last_seq": messages[-1]["seq"], "messages": messages,
    })


def message_removed(*, conversation_id: int, message_id: int, seq: int) -> None:
    publish_after_commit(
        conversation_group(conversation_id),
        {"type": "conv.removed", "conversation": conversation_id, "id": message_id, "seq": seq},
    )
    offline_push.message_removed(conversation_id=conversation_id, seq=seq)  # a shown push goes too


def membership_changed(*, user_id: int, change: str, conversation: dict[str, Any]) -> None:
    """``change`` is joined, left or updated; the user's sockets follow without reconnecting."""
    publish_after_commit(user_group(user_id), {"type": f"user.{change}", "conversation": conversation})


def receipt_route(receipts: list[dict[str, Any]], *, member_count: int, conversation_id: int
                  ) -> tuple[str, dict[str, Any]]:
    """Where the receipts of one conversation go: ``(group, event)``.

    ``receipts`` are the marks that advanced together, ``{"user", "delivered_seq",
    "read_seq"}`` each, plus ``"devices"`` (the devices whose acks moved them) from an ack
    flush. One ``conv.receipts`` event on the conversation's group carries them all, so a
    flush that advanced many members costs one layer message per gateway, not one per
    member. Who takes which marks is the gateway's part: in conversations small enough for
    receipts to be broadcast (``PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS``) every member's socket
    takes every mark; in larger ones (``own_only``) a socket takes only its own user's mark,
    so a user's other devices still clear their badges, and not the mark its own ack caused.
    """
    event = {"type": "conv.receipts", "conversation": conversation_id, "receipts": receipts,
             "own_only": member_count > settings.PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS}
    return conversation_group(conversation_id), event


def receipt_advanced(*, conversation_id: int, user_id: int, member_count: int,
                     delivered_seq: int, read_seq: int) -> None:
    marks = {"user": user_id, "delivered_seq": delivered_seq, "read_seq": read_seq}
    publish_after_commit(*receipt_route([marks], member_count=member_count, conversation_id=conversation_id))


async def publish_committed(group: str, event: dict[str, Any]) -> None:
    """From async code, for events whose transaction has already committed (gateway ack batches)."""
    try:
        await get_channel_layer().group_send(group, {**event, "group": group})
    except Exception as error:  # noqa: BLE001 - lossy doorbell; the watermarks are stored
        logger.warning("fan-out publish to %s failed (%s)", group, error)


def close_user_sockets(*, user_id: int, code: int) -> None:
    publish_after_commit(user_group(user_id), {"type": "socket.close", "code": code})


def close_device_sockets(*, device_id: Any, code: int) -> None:
    publish_after_commit(device_group(device_id), {"type": "socket.close", "code": code})
