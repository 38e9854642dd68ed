"""The replay path: what a device missed, read from PostgreSQL in bounded pages.

docs/architecture.md, "Replay path". CONTRACT hello: for each of the user's conversations,
resume after the cursor the client gave; else after the device's stored ack cursor; else
after the user's ``delivered_seq`` (0 for a conversation joined while away). A page holds at
most ``PARLEY_REPLAY_PAGE_SIZE`` (200) messages; the client pulls the next one. No reconnect
triggers an unbounded query.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from receipts.models import DeviceCursor

from .errors import NotFound
from .events import MessagePayload, message_payload
from .models import Membership, User
from .selectors import messages_after


@dataclass(frozen=True)
class ConversationResume:
    conversation_id: int
    resume_after: int
    last_seq: int
    member_count: int
    # Resumed from a cursor (the client's, or the device's stored ack cursor) rather than
    # from the user's delivered_seq: a reconnect, not a device's first connection.
    from_cursor: bool = False


@dataclass(frozen=True)
class ReplayPage:
    conversation_id: int
    messages: list[MessagePayload]
    has_more: bool


def resume_points(*, user: User, device_id, cursors: dict[int, int]) -> list[ConversationResume]:
    """Where each of the user's conversations resumes for this device (two queries)."""
    memberships = list(
        Membership.objects.filter(user=user).select_related("conversation")
        .only("conversation_id", "delivered_seq", "conversation__last_seq", "conversation__member_count")
    )
    stored = dict(DeviceCursor.objects.filter(device_id=device_id).values_list("conversation_id", "ack_seq"))
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
        points.append(ConversationResume(cid, min(after, last_seq), last_seq, membership.conversation.member_count,
                                         from_cursor=cid in cursors or cid in stored))
    return points


def replay_page(*, user: User, conversation_id: int, after_seq: int, limit: int | None = None) -> ReplayPage:
    """A page for a replay frame; authorized again here, since membership can change mid-connection."""
    if not Membership.objects.filter(conversation_id=conversation_id, user=user).exists():
        raise NotFound("conversation not found")
    limit = min(limit or settings.PARLEY_REPLAY_PAGE_SIZE, settings.PARLEY_REPLAY_PAGE_SIZE)
    messages, has_more = messages_after(conversation_id, after_seq, limit)
    return ReplayPage(conversation_id, [message_payload(m) for m in messages], has_more)


def resume_page(*, conversation_id: int, after_seq: int) -> ReplayPage:
    """The first page a ``hello`` sends for a conversation :func:`resume_points` just found the
    user in (authorized there, moments before): every device of a storm that missed the same
    messages asks for the same page, so the gateway shares it (gateway/fills.py)."""
    messages, has_more = messages_after(conversation_id, after_seq, settings.PARLEY_REPLAY_PAGE_SIZE)
    return ReplayPage(conversation_id, [message_payload(m) for m in messages], has_more)


def fill_range(*, conversation_id: int, after_seq: int, upto_seq: int) -> ReplayPage:
    """The live path's gap fill: (after_seq, upto_seq], at most one page."""
    limit = settings.PARLEY_REPLAY_PAGE_SIZE
    messages, _ = messages_after(conversation_id, after_seq, min(limit, max(upto_seq - after_seq, 1)))
    return ReplayPage(conversation_id, [message_payload(m) for m in messages],
                      has_more=upto_seq - after_seq > limit)


def conversation_last_seqs(conversation_ids: list[int]) -> dict[int, int]:
    from .models import Conversation

    return dict(Conversation.objects.filter(pk__in=conversation_ids).values_list("pk", "last_seq"))
