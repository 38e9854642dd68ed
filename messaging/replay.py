"""The replay path: what a device missed, read from PostgreSQL in bounded pages.

docs/architecture.md, "Replay path". Where each conversation resumes is the receipts app's
part (receipts.resume); the pages are read here. A page holds at most
``PARLEY_REPLAY_PAGE_SIZE`` (200) messages; the client pulls the next one. No reconnect
triggers an unbounded query.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from .errors import NotFound
from .models import Conversation, Membership, User
from .payloads import MessagePayload, message_payload
from .selectors import messages_after


@dataclass(frozen=True)
class ReplayPage:
    conversation_id: int
    messages: list[MessagePayload]
    has_more: bool


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
    messages asks for the same page, so the gateway shares it (gateway.fills)."""
    messages, has_more = messages_after(conversation_id, after_seq, settings.PARLEY_REPLAY_PAGE_SIZE)
    return ReplayPage(conversation_id, [message_payload(m) for m in messages], has_more)


def fill_range(*, conversation_id: int, after_seq: int, upto_seq: int) -> ReplayPage:
    """The live path's gap fill: (after_seq, upto_seq], at most one page."""
    limit = settings.PARLEY_REPLAY_PAGE_SIZE
    messages, _ = messages_after(conversation_id, after_seq, min(limit, max(upto_seq - after_seq, 1)))
    return ReplayPage(conversation_id, [message_payload(m) for m in messages],
                      has_more=upto_seq - after_seq > limit)


def conversation_last_seqs(conversation_ids: list[int]) -> dict[int, int]:
    """The stored ``last_seq`` of each conversation, in chunks of a thousand ids."""
    result: dict[int, int] = {}
    for start in range(0, len(conversation_ids), 1000):
        chunk = conversation_ids[start:start + 1000]
        result.update(Conversation.objects.filter(pk__in=chunk).values_list("pk", "last_seq"))
    return result
