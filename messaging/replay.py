"""The replay path: what a device missed, read from PostgreSQL in bounded pages, for both
streams: messages by seq and changes by change number.

docs/architecture.md, "Replay path". Where each conversation resumes is the receipts app's
part (receipts.resume); the pages are read here. A page holds at most
``PARLEY_REPLAY_PAGE_SIZE`` (200) messages or changes; the client pulls the next one. No
reconnect triggers an unbounded query.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings

from .errors import NotFound
from .models import Conversation, Membership, User
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
