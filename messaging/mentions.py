"""Who a body mentions (CONTRACT v1.1, "Mentions"), and the count of a member's unread ones.

``@username`` mentions a member of the conversation; ``@all`` mentions every member where the
conversation has at most ``PARLEY_MENTION_ALL_MAX_MEMBERS``. Anyone else, and anything in
code, stays text. The rendering (messaging.formatting) and the mention list come from one
parse, so what is highlighted is exactly what is stored.

Invariant: ``unread_mentions`` is a count of :class:`~messaging.models.Mention` rows with a
seq after the member's ``read_seq``, never a counter: it cannot drift from what is stored,
and a deleted or removed message's mentions go with it.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Lower

from .formatting import USERNAME_AFTER_AT, render_markdown
from .models import Conversation, Membership, Mention, Message

EVERYONE = "all"


@dataclass(frozen=True)
class RenderedBody:
    html: str
    mention_ids: list[int]


def _candidates(body: str) -> set[str]:
    """Lowercased names after an ``@``, each with its trailing punctuation peeled off one by one."""
    names: set[str] = set()
    for found in USERNAME_AFTER_AT.finditer(body):
        name = found.group(1).lower()
        while name:
            names.add(name)
            if name[-1] not in ".+-@":
                break
            name = name[:-1]
    return names


def _mentionable(conversation: Conversation, candidates: set[str]) -> dict[str, int | None]:
    """Lowercased username -> id of the members named; ``"all" -> None`` when @all applies."""
    if not candidates:
        return {}
    known: dict[str, int | None] = dict(
        Membership.objects.filter(conversation=conversation)
        .annotate(name=Lower("user__username")).filter(name__in=candidates)
        .order_by("user_id").values_list("name", "user_id")
    )
    if (EVERYONE in candidates and EVERYONE not in known
            and conversation.member_count <= settings.PARLEY_MENTION_ALL_MAX_MEMBERS):
        known[EVERYONE] = None
    return known


def render_body(conversation: Conversation, body: str) -> RenderedBody:
    """The display HTML of a body in a conversation, and the ids of the members it mentions.
    Costs a query only when the body has an ``@``."""
    known = _mentionable(conversation, _candidates(body)) if "@" in body else {}
    html, mentioned = render_markdown(body, known)
    ids: set[int] = {user_id for user_id in mentioned if user_id is not None}
    if None in mentioned:
        ids.update(Membership.objects.filter(conversation=conversation).values_list("user_id", flat=True))
    return RenderedBody(html=html, mention_ids=sorted(ids))


def store_mentions(message: Message, *, new: bool = False) -> None:
    """Make the Mention rows of a message what its ``mention_ids`` say (inside its
    transaction); ``new``: the message was just stored and has none yet."""
    have: set[int] = set()
    if not new:
        Mention.objects.filter(message=message).exclude(user_id__in=message.mention_ids).delete()
        have = set(Mention.objects.filter(message=message).values_list("user_id", flat=True))
    Mention.objects.bulk_create([
        Mention(conversation_id=message.conversation_id, user_id=user_id, message=message, seq=message.seq)
        for user_id in message.mention_ids if user_id not in have
    ])


def with_unread_mentions(memberships: QuerySet[Membership]) -> QuerySet[Membership]:
    """Annotate each membership with ``unread_mentions`` (one subquery on the mention index)."""
    unread = (Mention.objects.filter(user_id=OuterRef("user_id"), conversation_id=OuterRef("conversation_id"),
                                     seq__gt=OuterRef("read_seq"))
              .order_by().values("user_id").annotate(n=Count("id")).values("n"))
    return memberships.annotate(unread_mentions=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)))


def unread_mentions(membership: Membership) -> int:
    """The member's mentions after their read_seq (the annotation when the query made one)."""
    annotated = getattr(membership, "unread_mentions", None)
    if annotated is not None:
        return int(annotated)
    return Mention.objects.filter(user_id=membership.user_id, conversation_id=membership.conversation_id,
                                  seq__gt=membership.read_seq).count()
