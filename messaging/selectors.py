"""Reads. Every list is bounded; every message read walks the (conversation, seq) index."""
from __future__ import annotations

import functools
from typing import Any, Sequence

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from . import rows
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
    """Ascending messages with seq > after_seq, with MESSAGE_JOINS loaded; has_more if more follow.

    Every replay page, gap fill and hello's first page reads here: on PostgreSQL with a
    prebuilt statement (messaging.rows; a storm's shared pages spent most of their time in the
    ORM's compiler and row builder), the ORM's query elsewhere. Both load the same instances.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_messages_after_sql(), [conversation_id, after_seq, limit + 1])
            messages = [_message_with_joins(row) for row in cursor.fetchall()]
    else:
        messages = list(
            Message.objects.filter(conversation_id=conversation_id, seq__gt=after_seq)
            .select_related(*MESSAGE_JOINS).order_by("seq")[: limit + 1]
        )
    return messages[:limit], len(messages) > limit


@functools.cache
def _messages_after_sql() -> str:
    """Messages (m) with their sender (s), the message each answers (r) and its sender (rs):
    the select_related of MESSAGE_JOINS, in :func:`_message_with_joins`' column order."""
    quote = connection.ops.quote_name
    messages, users = quote(Message._meta.db_table), quote(User._meta.db_table)
    column = {field.name: quote(field.column) for field in Message._meta.concrete_fields}
    user_pk, message_pk = quote(User._meta.pk.column), quote(Message._meta.pk.column)
    return (
        f"SELECT {rows.select_list(Message, 'm')}, {rows.select_list(User, 's')}, "
        f"{rows.select_list(Message, 'r')}, {rows.select_list(User, 'rs')} "
        f"FROM {messages} m JOIN {users} s ON s.{user_pk} = m.{column['sender']} "
        f"LEFT JOIN {messages} r ON r.{message_pk} = m.{column['reply_to']} "
        f"LEFT JOIN {users} rs ON rs.{user_pk} = r.{column['sender']} "
        f"WHERE m.{column['conversation']} = %s AND m.{column['seq']} > %s ORDER BY m.{column['seq']} LIMIT %s")


def _message_with_joins(row: Sequence[Any]) -> Message:
    message_width, user_width = rows.field_count(Message), rows.field_count(User)
    message = rows.from_row(Message, row[:message_width])
    Message.sender.field.set_cached_value(message, rows.from_row(User, row[message_width:message_width + user_width]))
    reply_start = message_width + user_width
    reply: Message | None = None
    if row[reply_start] is not None:  # the LEFT JOIN found the message this one answers
        reply = rows.from_row(Message, row[reply_start:reply_start + message_width])
        Message.sender.field.set_cached_value(reply, rows.from_row(User, row[reply_start + message_width:]))
    Message.reply_to.field.set_cached_value(message, reply)
    return message


def messages_before(conversation_id: int, before_seq: int, limit: int) -> tuple[list[Message], bool]:
    """The ``limit`` messages just before before_seq, returned ascending; has_more if older exist."""
    messages = list(
        Message.objects.filter(conversation_id=conversation_id, seq__lt=before_seq)
        .select_related(*MESSAGE_JOINS).order_by("-seq")[: limit + 1]
    )
    has_more = len(messages) > limit
    return list(reversed(messages[:limit])), has_more


def changes_after(conversation_id: int, after: int, limit: int) -> tuple[list[MessageChange], bool]:
    """Ascending changes with a number > after, each with its message as it is now; has_more
    if more follow. One query on the (conversation, change) index."""
    changes = list(
        MessageChange.objects.filter(conversation_id=conversation_id, change__gt=after)
        .select_related(*(f"message__{join}" for join in MESSAGE_JOINS)).order_by("change")[: limit + 1]
    )
    return changes[:limit], len(changes) > limit
