"""The fan-out policy: the one module that decides how an event leaves a committed transaction.

Invariants (docs/architecture.md, "Fan-out"):

* Nothing leaves before commit. Every event is scheduled with ``transaction.on_commit``;
  a rolled-back transaction sends nothing. ``after_commit`` serializes the event when it is
  scheduled, so a payload that cannot be sent fails the request, not a later callback.
* The channel layer is a doorbell, not a mailbox: a lost event is repaired by the gateway's
  gap fill and by replay from PostgreSQL. A failure to publish never fails a stored send.
* Size decides the path: conversations with fewer than ``PARLEY_LARGE_CHANNEL_THRESHOLD``
  members get one layer event per message, published by the process that stored it
  (direct); larger ones are to be handed to workers that batch a short window (buffered,
  not built yet: until then every conversation takes the direct path).

Group shape: a conversation's group holds one channel per *gateway process* that has a
member online, not one per socket; the gateway dispatches locally to its sockets. A send
therefore costs one layer message per gateway, whatever the member count. User- and
device-addressed events (own-device receipts, membership changes, forced closes) go to
small per-user and per-device groups of socket channels.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

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
    event = {**event, "group": group}
    try:
        async_to_sync(get_channel_layer().group_send)(group, event)
    except Exception:  # noqa: BLE001 - the store has it; replay repairs a lost doorbell
        logger.warning("fan-out publish to %s failed; replay will repair", group, exc_info=True)


def after_commit(action: Callable[[], None]) -> None:
    """Run ``action`` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(action, robust=True)


def publish_after_commit(group: str, event: dict[str, Any]) -> None:
    json.dumps(event)  # fail now, inside the request, if the payload cannot travel
    after_commit(lambda: _publish(group, event))


# --- What the use-case functions call ----------------------------------------------------

def message_stored(*, conversation_id: int, seq: int, member_count: int, payload: dict[str, Any]) -> None:
    # Buffered fan-out for large channels is not built yet (issue 4): every size goes direct.
    publish_after_commit(
        conversation_group(conversation_id),
        {"type": "conv.message", "conversation": conversation_id, "seq": seq, "message": payload},
    )


def message_removed(*, conversation_id: int, message_id: int, seq: int) -> None:
    publish_after_commit(
        conversation_group(conversation_id),
        {"type": "conv.removed", "conversation": conversation_id, "id": message_id, "seq": seq},
    )


def membership_changed(*, user_id: int, change: str, conversation: dict[str, Any]) -> None:
    """``change`` is joined, left or updated; the user's sockets follow without reconnecting."""
    publish_after_commit(user_group(user_id), {"type": f"user.{change}", "conversation": conversation})


def receipt_advanced(*, conversation_id: int, user_id: int, member_count: int,
                     delivered_seq: int, read_seq: int) -> None:
    event = {
        "type": "conv.receipt",
        "conversation": conversation_id,
        "user": user_id,
        "delivered_seq": delivered_seq,
        "read_seq": read_seq,
    }
    # The user's own other devices always hear it (badges clear everywhere); the other
    # members only in conversations small enough for receipts to be broadcast.
    if member_count <= settings.PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS:
        publish_after_commit(conversation_group(conversation_id), event)
    else:
        publish_after_commit(user_group(user_id), event)


def close_user_sockets(*, user_id: int, code: int) -> None:
    publish_after_commit(user_group(user_id), {"type": "socket.close", "code": code})


def close_device_sockets(*, device_id: Any, code: int) -> None:
    publish_after_commit(device_group(device_id), {"type": "socket.close", "code": code})
