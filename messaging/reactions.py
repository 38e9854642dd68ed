"""Reactions: one emoji per user and message, shown as counts (CONTRACT v1.1).

``emoji`` is one Unicode emoji (a grapheme cluster such as 👍🏽 or 👨‍👩‍👧) or a ``:short_name:``
of the emoji library's list (CLDR names and the common aliases: ``:thumbs_up:``, ``:+1:``).
Either way it is stored fully qualified (``❤`` and ``:heart:`` are both ``❤️``), so one
reaction has one spelling.

Invariant (tested as a property): a message's ``reactions`` field equals
:func:`summarize` of its :class:`~messaging.models.Reaction` rows: one entry per emoji in
the order of its earliest current reaction, its count, and the first
``PARLEY_REACTION_USERS_SHOWN`` users to react. It is kept incrementally under the message's
row lock: adding costs no query (the new row is the newest), removing re-reads the counts
(at most ``PARLEY_MAX_REACTIONS_PER_MESSAGE`` rows) and the one emoji's first users.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

import emoji as emoji_data
from django.conf import settings
from django.db.models import Count, Min

from .changes import apply_change, record_change
from .checks import check_text
from .errors import Conflict, Invalid
from .models import Message, MessageChange, Reaction, User
from .payloads import ChangePayload, MessagePayload, ReactionPayload

_SHORT_NAME = re.compile(r":[\w+\-&.'()!#*]{1,60}:")
EMOJI_MAX_LENGTH = 64


def check_emoji(value: Any) -> str:
    """One emoji, fully qualified, or :class:`Invalid`."""
    text = check_text(value, "emoji", max_length=EMOJI_MAX_LENGTH).strip()
    if _SHORT_NAME.fullmatch(text):
        named = emoji_data.emojize(text, language="alias")
        if named == text:
            raise Invalid("unknown emoji name", fields={"emoji": [f"{text} is not an emoji name this server knows."]})
        text = named
    if not emoji_data.is_emoji(text):
        raise Invalid("not one emoji", fields={"emoji": ["One emoji, or a :short_name:, is required."]})
    return emoji_data.emojize(emoji_data.demojize(text))


def summarize(rows: Iterable[tuple[str, int]]) -> list[ReactionPayload]:
    """The reference summary of ``(emoji, user_id)`` rows in the order they were made."""
    shown = settings.PARLEY_REACTION_USERS_SHOWN
    summary: dict[str, ReactionPayload] = {}
    for emoji, user_id in rows:
        entry = summary.setdefault(emoji, {"emoji": emoji, "count": 0, "users": []})
        entry["count"] += 1
        if len(entry["users"]) < shown:
            entry["users"].append(user_id)
    return list(summary.values())


def _with_added(summary: list[ReactionPayload], emoji: str, user_id: int) -> list[ReactionPayload]:
    shown = settings.PARLEY_REACTION_USERS_SHOWN
    for entry in summary:
        if entry["emoji"] == emoji:
            users = entry["users"] + [user_id] if len(entry["users"]) < shown else entry["users"]
            return [{**e, "count": e["count"] + 1, "users": users} if e is entry else e for e in summary]
    return [*summary, {"emoji": emoji, "count": 1, "users": [user_id]}]


def _without(message: Message, emoji: str) -> list[ReactionPayload]:
    """The summary re-read after a removal (the row is already deleted)."""
    counts = (Reaction.objects.filter(message=message).values("emoji")
              .annotate(count=Count("id"), first=Min("id")).order_by("first"))
    previous = {entry["emoji"]: entry for entry in message.reactions}
    summary: list[ReactionPayload] = []
    for row in counts:
        if row["emoji"] == emoji or row["emoji"] not in previous:
            users = list(Reaction.objects.filter(message=message, emoji=row["emoji"]).order_by("id")
                         .values_list("user_id", flat=True)[:settings.PARLEY_REACTION_USERS_SHOWN])
        else:
            users = previous[row["emoji"]]["users"]
        summary.append({"emoji": row["emoji"], "count": row["count"], "users": users})
    return summary


def _require_reactable(message: Message) -> None:
    if message.is_removed:
        raise Conflict(f"a {message.state} message takes no reactions")


def do_add_reaction(*, user: User, message_id: Any, emoji: Any) -> MessagePayload:
    """React to a message; a reaction the user already has changes nothing."""
    emoji = check_emoji(emoji)

    def decide(message: Message) -> Callable[[], ChangePayload] | None:
        _require_reactable(message)
        if Reaction.objects.filter(message=message, emoji=emoji, user=user).exists():
            return None
        known = {entry["emoji"] for entry in message.reactions}
        if emoji not in known and len(known) >= settings.PARLEY_MAX_REACTIONS_PER_MESSAGE:
            raise Conflict(f"a message takes at most {settings.PARLEY_MAX_REACTIONS_PER_MESSAGE} different reactions")

        def apply() -> ChangePayload:
            Reaction.objects.create(message=message, emoji=emoji, user=user)
            return record_change(message, kind=MessageChange.Kind.REACTION, actor=user,
                                 write=lambda change: {"reactions": _with_added(message.reactions, emoji, user.pk)})
        return apply

    return apply_change(user, message_id, decide)


def do_remove_reaction(*, user: User, message_id: Any, emoji: Any) -> MessagePayload:
    """Take one's reaction back; one the user does not have changes nothing."""
    emoji = check_emoji(emoji)

    def decide(message: Message) -> Callable[[], ChangePayload] | None:
        _require_reactable(message)
        mine = Reaction.objects.filter(message=message, emoji=emoji, user=user)
        if not mine.exists():
            return None

        def apply() -> ChangePayload:
            mine.delete()
            return record_change(message, kind=MessageChange.Kind.REACTION, actor=user,
                                 write=lambda change: {"reactions": _without(message, emoji)})
        return apply

    return apply_change(user, message_id, decide)
