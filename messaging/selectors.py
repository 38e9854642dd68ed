"""Reads. Every list is bounded; every message read walks the (conversation, seq) index."""
from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet

from .mentions import with_unread_mentions
from .models import Membership, Message, MessageChange, User

# What a message payload reads besides the row (messaging.payloads.message_payload).
MESSAGE_JOINS = ("sender", "reply_to__sender")


def my_memberships(user: User) -> QuerySet[Membership]:
    """The user's conversations, most recent activity first, with their unread mentions."""
    return with_unread_mentions(
        Membership.objects.filter(user=user)
        .select_related("conversation")
        .order_by("-conversation__last_activity_at", "-conversation_id")
    )


def clamp_limit(limit: int | None, *, default: int | None = None) -> int:
    maximum = settings.PARLEY_PAGE_SIZE_MAX
    if limit is None:
        return min(default or settings.PARLEY_PAGE_SIZE_DEFAULT, maximum)
    return max(1, min(limit, maximum))


def messages_after(conversation_id: int, after_seq: int, limit: int) -> tuple[list[Message], bool]:
    """Ascending messages with seq > after_seq; has_more if more follow."""
    rows = list(
        Message.objects.filter(conversation_id=conversation_id, seq__gt=after_seq)
        .select_related(*MESSAGE_JOINS).order_by("seq")[: limit + 1]
    )
    return rows[:limit], len(rows) > limit


def messages_before(conversation_id: int, before_seq: int, limit: int) -> tuple[list[Message], bool]:
    """The ``limit`` messages just before before_seq, returned ascending; has_more if older exist."""
    rows = list(
        Message.objects.filter(conversation_id=conversation_id, seq__lt=before_seq)
        .select_related(*MESSAGE_JOINS).order_by("-seq")[: limit + 1]
    )
    has_more = len(rows) > limit
    return list(reversed(rows[:limit])), has_more


def changes_after(conversation_id: int, after: int, limit: int) -> tuple[list[MessageChange], bool]:
    """Ascending changes with a number > after, each with its message as it is now; has_more
    if more follow. One query on the (conversation, change) index."""
    rows = list(
        MessageChange.objects.filter(conversation_id=conversation_id, change__gt=after)
        .select_related(*(f"message__{join}" for join in MESSAGE_JOINS)).order_by("change")[: limit + 1]
    )
    return rows[:limit], len(rows) > limit
