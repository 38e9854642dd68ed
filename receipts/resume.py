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

from dataclasses import dataclass
from typing import Any

from messaging.models import Membership, User

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
    """Where each of the user's conversations resumes for this device (two queries)."""
    change_cursors = change_cursors or {}
    memberships = list(
        Membership.objects.filter(user=user).select_related("conversation")
        .only("conversation_id", "delivered_seq", "conversation__last_seq", "conversation__last_change",
              "conversation__member_count")
    )
    stored = DeviceCursor.objects.of_device(device_id)
    points = []
    for membership in memberships:
        cid = membership.conversation_id
        last_seq = membership.conversation.last_seq
        if cid in cursors:
            after = cursors[cid]
        elif cid in stored:
            after = stored[cid]
        else:
            after = membership.delivered_seq
        last_change = membership.conversation.last_change
        points.append(ConversationResume(cid, min(after, last_seq), last_seq, membership.conversation.member_count,
                                         change_after=min(change_cursors.get(cid, last_change), last_change),
                                         last_change=last_change, from_cursor=cid in cursors or cid in stored))
    return points
