"""Where a device resumes each conversation when it says ``hello`` (CONTRACT, "WebSocket").

For each of the user's conversations: after the cursor the client gave; else after the
device's stored ack cursor; else after the user's ``delivered_seq`` (0 for a conversation
joined while away). The pages themselves are the core's (messaging.replay); where they start
is a matter of receipts.

The change stream resumes after the change cursor the client gave (``hello``'s ``changes``);
a conversation without one starts at its ``last_change`` with no replay: the client holds
none of it, or did not ask (the messages it is sent carry their current state anyway).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.db import connection

from messaging.models import Conversation, Device, Membership, User

from .models import DeviceCursor


@dataclass(frozen=True)
class ConversationResume:
    conversation_id: int
    resume_after: int
    last_seq: int
    member_count: int
    change_after: int = 0
    last_change: int = 0
    # Resumed from a cursor (the client's, or the device's stored ack cursor) rather than
    # from the user's delivered_seq: a reconnect, not a device's first connection.
    from_cursor: bool = False


def resume_points(*, user: User, device_id: Any, cursors: dict[int, int],
                  change_cursors: dict[int, int] | None = None) -> list[ConversationResume]:
    """Where each of the user's conversations resumes for this device: one prebuilt query
    (every hello asks, a reconnect storm a thousand times at once; the ORM's two queries
    cost more to compile than to run)."""
    change_cursors = change_cursors or {}
    with connection.cursor() as cursor:
        cursor.execute(_resume_sql(), [Device._meta.pk.get_db_prep_value(device_id, connection), user.pk])
        rows = cursor.fetchall()
    points = []
    for cid, delivered_seq, last_seq, last_change, member_count, stored in rows:
        if cid in cursors:
            after = cursors[cid]
        elif stored is not None:
            after = stored
        else:
            after = delivered_seq
        points.append(ConversationResume(cid, min(after, last_seq), last_seq, member_count,
                                         change_after=min(change_cursors.get(cid, last_change), last_change),
                                         last_change=last_change, from_cursor=cid in cursors or stored is not None))
    return points


@functools.cache
def _resume_sql() -> str:
    """The user's memberships with their conversations' heads and this device's stored ack
    cursor (NULL where it has none)."""
    quote = connection.ops.quote_name
    return (
        f"SELECT m.conversation_id, m.delivered_seq, c.last_seq, c.last_change, c.member_count, d.ack_seq "
        f"FROM {quote(Membership._meta.db_table)} m "
        f"JOIN {quote(Conversation._meta.db_table)} c ON c.id = m.conversation_id "
        f"LEFT JOIN {quote(DeviceCursor._meta.db_table)} d "
        f"ON d.conversation_id = m.conversation_id AND d.device_id = %s "
        f"WHERE m.user_id = %s ORDER BY m.conversation_id")
