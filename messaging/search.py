"""Full-text search over the messages of the searcher's conversations (CONTRACT v1.1, "Search";
docs/architecture.md, "Search").

Promises:

* **Scoped to now.** Only conversations the user is a member of when searching: a left or
  removed member finds nothing of that conversation, though it once saw it.
* **No gone text.** Deleted and removed messages are never returned, and their words are in
  no index: their bodies are blanked in the row (messaging.changes, messaging.moderation),
  and the index is computed from the row by the database itself.
* **An index, not a scan** (PostgreSQL). Migration 0006 adds a generated ``search_vector``
  column and a GIN index over it; the planner ANDs its matches with the searcher's
  conversations (the ``conversation_id`` index), or walks a large conversation newest first
  for a common word (:func:`_newest_matching_ids`). A test pins the plan;
  ``bench/search.py`` measures it over a million messages.
* **Safe highlights.** ``ts_headline`` marks the matches with private-use characters (any in
  the body itself are stripped first); everything else is HTML-escaped here, so a
  highlight is escaped text with ``<mark>`` elements and nothing else.
* **Newest first, paged by a cursor**: ``before`` is a message id; a page is the ``limit``
  matches with smaller ids, and ``has_more`` says whether more follow.

Other databases (the embedded SQLite) search with ``icontains`` on every word and
highlight in Python: the same promises, without the index.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models.expressions import RawSQL

from . import ratelimit
from .access import access_membership
from .checks import MAX_SEQ, check_text, is_json_int
from .errors import Invalid
from .models import Membership, Message, User
from .selectors import MESSAGE_JOINS

# The text search configuration of the generated column (migration 0006): both must agree.
SEARCH_CONFIG = "english"
# ts_headline wraps each match in these (Unicode private-use characters, stripped from the
# body before it is headlined), so the markup can be added after escaping everything else.
_START, _STOP = "\ue000", "\ue001"
_FRAGMENT_DELIMITER = " \u2026 "


@dataclass(frozen=True)
class SearchHit:
    message: Message  # with its sender, reply and conversation loaded
    highlight: str  # HTML: escaped text with <mark> around the matches


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    has_more: bool


def check_query(query: Any) -> str:
    text = check_text(query, "q", max_length=settings.PARLEY_SEARCH_MAX_QUERY_LENGTH).strip()
    if not text:
        raise Invalid("q may not be empty", fields={"q": ["Type something to search for."]})
    return text


def clamp_search_limit(limit: int | None) -> int:
    if limit is None:
        return settings.PARLEY_SEARCH_PAGE_SIZE_DEFAULT
    return max(1, min(limit, settings.PARLEY_SEARCH_PAGE_SIZE_MAX))


def search_messages(*, user: User, query: Any, conversation_id: Any = None, before: Any = None,
                    limit: int | None = None) -> SearchPage:
    """The user's newest messages matching ``query`` (web-search syntax on PostgreSQL: words,
    ``"a phrase"``, ``or``, ``-word``), in one conversation if given (a member's, else
    NotFound), with ids below ``before`` if given."""
    text = check_query(query)
    if before is not None and (not is_json_int(before) or not 1 <= before <= MAX_SEQ):
        raise Invalid("before must be a message id", fields={"before": ["A message id is required."]})
    ratelimit.enforce(ratelimit.SEARCH, user.pk, user=user)
    limit = clamp_search_limit(limit)
    scope = access_membership(user, conversation_id).conversation_id if conversation_id is not None else None
    postgres = connection.vendor == "postgresql"
    # The page's ids first (the index does the work), then the rows and their highlights:
    # ts_headline reads whole bodies, so it runs on the page only.
    if postgres:
        ids = _newest_matching_ids(user_id=user.pk, text=text, conversation_id=scope, before=before, limit=limit + 1)
    else:
        ids = _newest_matching_ids_fallback(user=user, text=text, conversation_id=scope, before=before,
                                            limit=limit + 1)
    has_more = len(ids) > limit
    ids = ids[:limit]
    rows = Message.objects.select_related(*MESSAGE_JOINS, "conversation").filter(pk__in=ids)
    if postgres:
        rows = rows.annotate(headline=RawSQL(
            f"ts_headline(%s::regconfig, translate({Message._meta.db_table}.body, %s, ''), "
            "websearch_to_tsquery(%s::regconfig, %s), %s)",
            (SEARCH_CONFIG, _START + _STOP, SEARCH_CONFIG, text, _headline_options()),
        ))
    by_id = {message.pk: message for message in rows}
    hits = []
    for pk in ids:
        message = by_id.get(pk)
        if message is None or message.is_removed:  # deleted between the two reads
            continue
        marked = getattr(message, "headline", None) if postgres else _headline_words(message.body, text)
        hits.append(SearchHit(message=message, highlight=marked_html(marked or "")))
    return SearchPage(hits=hits, has_more=has_more)


def _newest_matching_ids(*, user_id: int, text: str, conversation_id: int | None, before: int | None,
                         limit: int) -> list[int]:
    """The ids of the newest ``limit`` matches in the user's conversations (PostgreSQL).

    One statement, a branch per large conversation of the user and one for all the others,
    each planned with its own literal conversation ids, so the planner's statistics (the
    conversation's share of the table, the words' frequencies) choose per branch:

    * a large conversation (``PARLEY_SEARCH_LARGE_CONVERSATION_MESSAGES`` or more) gets the
      GIN index's matches ANDed with its rows for a rare word, or, for a common word, its
      ``(conversation_id, seq)`` index walked backwards until a page of matches is found: a
      busy channel's 30,000 matches of "the meeting" are never all read to keep 20;
    * the others together get the GIN index's matches ANDed with their rows
      (``conversation_id = ANY``), sorted.

    A parameterized plan (a join or a lateral over the memberships) would size every
    conversation alike and read a large one's every match. The cost follows the searcher's
    conversations and never another's. Within a conversation seq order is id order (a send
    takes its seq and its id under the conversation's row lock), so "newest by seq" inside a
    branch and "newest by id" across them agree, and the cursor ``before`` (an id) pages
    without gaps.
    """
    memberships = Membership.objects.filter(user_id=user_id)
    if conversation_id is not None:
        memberships = memberships.filter(conversation_id=conversation_id)
    threshold = settings.PARLEY_SEARCH_LARGE_CONVERSATION_MESSAGES
    large: list[int] = []
    small: list[int] = []
    for conversation, last_seq in memberships.values_list("conversation_id", "conversation__last_seq"):
        (large if last_seq >= threshold else small).append(conversation)
    if not large and not small:
        return []
    match = ("m.state = 'visible' AND m.search_vector @@ websearch_to_tsquery(%s::regconfig, %s)"
             + (" AND m.id < %s" if before is not None else ""))
    match_params: list[Any] = [SEARCH_CONFIG, text] + ([before] if before is not None else [])
    branches: list[str] = []
    params: list[Any] = []
    for conversation in large:
        branches.append(f"(SELECT m.id FROM messaging_message AS m WHERE m.conversation_id = %s AND {match} "
                        "ORDER BY m.seq DESC LIMIT %s)")
        params += [conversation, *match_params, limit]
    if small:
        # ``id + 0``: no index offers this order, so the planner takes the matches from the
        # GIN index rather than walking the primary key backwards hoping to meet them early.
        branches.append(f"(SELECT m.id FROM messaging_message AS m WHERE m.conversation_id = ANY(%s) AND {match} "
                        "ORDER BY m.id + 0 DESC LIMIT %s)")
        params += [small, *match_params, limit]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT hits.id FROM ({' UNION ALL '.join(branches)}) AS hits ORDER BY hits.id DESC LIMIT %s",
                       [*params, limit])
        return [row[0] for row in cursor.fetchall()]


def _newest_matching_ids_fallback(*, user: User, text: str, conversation_id: int | None, before: int | None,
                                  limit: int) -> list[int]:
    """Every word of the query in the body (case-insensitive), newest first: no index."""
    candidates = (Message.objects.filter(conversation_id=conversation_id) if conversation_id is not None else
                  Message.objects.filter(conversation_id__in=Membership.objects.filter(user=user)
                                         .values("conversation_id")))
    candidates = candidates.filter(state=Message.State.VISIBLE)
    if before is not None:
        candidates = candidates.filter(pk__lt=before)
    for word in _words(text):
        candidates = candidates.filter(body__icontains=word)
    return list(candidates.order_by("-pk").values_list("pk", flat=True)[:limit])


def _words(text: str) -> list[str]:
    return [word for word in re.split(r"\s+", text.replace('"', " ")) if word]


def _headline_options() -> str:
    words = settings.PARLEY_SEARCH_HEADLINE_MAX_WORDS
    return (f"StartSel={_START}, StopSel={_STOP}, MaxWords={words}, MinWords={max(1, words // 3)}, "
            f'MaxFragments=2, FragmentDelimiter="{_FRAGMENT_DELIMITER}"')


def _headline_words(body: str, text: str) -> str:
    """The fallback's headline: up to PARLEY_SEARCH_HEADLINE_MAX_WORDS words around the first
    match, each match marked as ts_headline marks them."""
    body = body.replace(_START, "").replace(_STOP, "")
    words = _words(text)
    pattern = re.compile("|".join(re.escape(word) for word in words), re.IGNORECASE) if words else None
    tokens = body.split()
    first = next((i for i, token in enumerate(tokens) if pattern and pattern.search(token)), 0)
    keep = settings.PARLEY_SEARCH_HEADLINE_MAX_WORDS
    start = max(0, min(first - keep // 3, len(tokens) - keep))
    shown = " ".join(tokens[start:start + keep])
    if pattern is not None:
        shown = pattern.sub(lambda match: f"{_START}{match.group(0)}{_STOP}", shown)
    return ("\u2026 " if start else "") + shown + (" \u2026" if start + keep < len(tokens) else "")


def marked_html(marked: str) -> str:
    """Text with match markers as HTML: every character escaped, the markers as ``<mark>``.

    Only the markers become markup, and only balanced: a stray one is dropped.
    """
    out: list[str] = []
    open_mark = False
    for piece in re.split(f"([{_START}{_STOP}])", marked):
        if piece == _START:
            if not open_mark:
                out.append("<mark>")
                open_mark = True
        elif piece == _STOP:
            if open_mark:
                out.append("</mark>")
                open_mark = False
        elif piece:
            out.append(html.escape(piece, quote=True))
    if open_mark:
        out.append("</mark>")
    return "".join(out)


def search_conversation_ref(message: Message) -> dict[str, Any]:
    """What a result says of its conversation: ``{id, title, kind}`` (CONTRACT v1.1)."""
    conversation = message.conversation
    return {"id": conversation.pk, "title": conversation.title, "kind": conversation.kind}

