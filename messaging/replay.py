"""The replay path: what a device missed, read from PostgreSQL in bounded pages, for both
streams: messages by seq and changes by change number.

docs/architecture.md, "Replay path". Where each conversation resumes is the receipts app's
part (receipts.resume); the pages are read here. A page holds at most
``PARLEY_REPLAY_PAGE_SIZE`` (200) messages or changes; the client pulls the next one. No
reconnect triggers an unbounded query.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .errors import NotFound
from .events import RemovedFrame, removed_frame
from .models import Conversation, Device, Membership, Message, MessageChange, User
from .payloads import ChangePayload, MessagePayload, change_payload, message_payload
from .selectors import changes_after, messages_after


@dataclass(frozen=True)
class ReplayPage:
    conversation_id: int
    messages: list[MessagePayload]
    has_more: bool


@dataclass(frozen=True)
class ChangePage:
    conversation_id: int
    changes: list[ChangePayload]
    has_more: bool


def _page_limit(limit: int | None) -> int:
    return min(limit or settings.PARLEY_REPLAY_PAGE_SIZE, settings.PARLEY_REPLAY_PAGE_SIZE)


def _require_member(user: User, conversation_id: int) -> None:
    if not Membership.objects.filter(conversation_id=conversation_id, user=user).exists():
        raise NotFound("conversation not found")


def replay_page(*, user: User, conversation_id: int, after_seq: int, limit: int | None = None) -> ReplayPage:
    """A page for a replay frame; authorized again here, since membership can change mid-connection."""
    _require_member(user, conversation_id)
    limit = _page_limit(limit)
    messages, has_more = messages_after(conversation_id, after_seq, limit)
    return ReplayPage(conversation_id, [message_payload(m) for m in messages], has_more)


def resume_page(*, conversation_id: int, after_seq: int) -> ReplayPage:
    """The first page a ``hello`` sends for a conversation :func:`resume_points` just found the
    user in (authorized there, moments before): every device of a storm that missed the same
    messages asks for the same page, so the gateway shares it (gateway.fills)."""
    messages, has_more = messages_after(conversation_id, after_seq, settings.PARLEY_REPLAY_PAGE_SIZE)
    return ReplayPage(conversation_id, [message_payload(m) for m in messages], has_more)


def fill_range(*, conversation_id: int, after_seq: int, upto_seq: int) -> ReplayPage:
    """The live path's gap fill: (after_seq, upto_seq], at most one page."""
    limit = settings.PARLEY_REPLAY_PAGE_SIZE
    messages, _ = messages_after(conversation_id, after_seq, min(limit, max(upto_seq - after_seq, 1)))
    return ReplayPage(conversation_id, [message_payload(m) for m in messages],
                      has_more=upto_seq - after_seq > limit)


def change_page(*, conversation_id: int, after: int, limit: int | None = None) -> ChangePage:
    """Changes after ``after`` (the caller authorized the reader): REST's page, hello's first."""
    rows, has_more = changes_after(conversation_id, after, _page_limit(limit))
    return ChangePage(conversation_id, [change_payload(row, row.message) for row in rows], has_more)


def change_replay_page(*, user: User, conversation_id: int, after: int, limit: int | None = None) -> ChangePage:
    """A page for a ``replay_changes`` frame, authorized again like :func:`replay_page`."""
    _require_member(user, conversation_id)
    return change_page(conversation_id=conversation_id, after=after, limit=limit)


def change_fill_range(*, conversation_id: int, after: int, upto: int) -> ChangePage:
    """The change stream's gap fill: (after, upto], at most one page."""
    limit = settings.PARLEY_REPLAY_PAGE_SIZE
    page = change_page(conversation_id=conversation_id, after=after, limit=min(limit, max(upto - after, 1)))
    return ChangePage(conversation_id, page.changes, has_more=upto - after > limit)


class Heads(NamedTuple):
    last_seq: int
    last_change: int


def conversation_heads(conversation_ids: list[int]) -> dict[int, Heads]:
    """The stored heads of both streams of each conversation, in chunks of a thousand ids."""
    result: dict[int, Heads] = {}
    for start in range(0, len(conversation_ids), 1000):
        chunk = conversation_ids[start:start + 1000]
        for pk, last_seq, last_change in Conversation.objects.filter(pk__in=chunk).values_list(
                "pk", "last_seq", "last_change"):
            result[pk] = Heads(last_seq, last_change)
    return result


# --- message.removed frames for a device that was away ------------------------------------------

WITHDRAWALS = (MessageChange.Kind.DELETED.value, MessageChange.Kind.REMOVED.value)
# Removals are replayed from the device's previous hello, minus this, so that gateways whose
# clocks disagree a little still miss none (a removal told twice is harmless).
_CLOCK_SKEW = timedelta(minutes=1)


def removals_to_replay(*, device: Device) -> list[RemovedFrame]:
    """``message.removed`` frames for what was removed or deleted in the user's conversations
    since this device's previous hello (at most a replay page, the most recent), and note
    this hello. (Clients that follow the change stream get the same from it, exactly.)

    Live ``message.removed`` frames may be lost like any doorbell; counting from the previous
    hello (not the previous disconnect) repeats the ones of the last connection, so a lost
    one is repaired at the next hello.

    Every hello pays this, a reconnect storm a thousand times at once: on PostgreSQL the
    note and the read are one prebuilt statement (the ORM's compiler cost more than both).
    """
    since, now = device.last_seen_at, timezone.now()
    device.last_seen_at = now
    if since is None:  # a new device holds no message that could have been removed
        Device.objects.filter(pk=device.pk).update(last_seen_at=now)
        return []
    limit, after = settings.PARLEY_REPLAY_PAGE_SIZE, since - _CLOCK_SKEW
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_withdrawals_sql(), [now, device.pk, after, device.user_id, limit])
            rows = cursor.fetchall()
    else:
        Device.objects.filter(pk=device.pk).update(last_seen_at=now)
        conversations = Membership.objects.filter(user_id=device.user_id).values("conversation_id")
        rows = list(MessageChange.objects
                    .filter(kind__in=WITHDRAWALS, at__gte=after, conversation__in=conversations)
                    .order_by("-at").values_list("conversation_id", "message_id", "message__seq")[:limit])
    seen: set[int] = set()
    removals = []
    for conversation_id, message_id, seq in reversed(rows):
        if message_id not in seen:
            seen.add(message_id)
            removals.append(removed_frame(conversation_id, message_id, seq))
    return removals


@functools.cache
def _withdrawals_sql() -> str:
    """The hello's note and read of :func:`removals_to_replay` as one statement: the UPDATE runs
    as a data-modifying CTE (PostgreSQL runs those whether or not the query reads them). The
    kinds are literals so the partial index ``change_withdrawals`` matches its predicate."""
    quote = connection.ops.quote_name
    kinds = ", ".join(f"'{kind}'" for kind in WITHDRAWALS)  # constants of the model, not input
    return (
        f"WITH seen AS (UPDATE {quote(Device._meta.db_table)} SET last_seen_at = %s WHERE id = %s RETURNING 1) "
        f"SELECT c.conversation_id, c.message_id, m.seq FROM {quote(MessageChange._meta.db_table)} c "
        f"JOIN {quote(Message._meta.db_table)} m ON m.id = c.message_id "
        f"WHERE c.kind IN ({kinds}) AND c.at >= %s AND c.conversation_id IN "
        f"(SELECT conversation_id FROM {quote(Membership._meta.db_table)} WHERE user_id = %s) "
        f"ORDER BY c.at DESC LIMIT %s")
