"""Typing and presence announcements: lossy extras, never stored, never retried, shed first
(CONTRACT "Semantics" 6; ops.degraded).

The counts themselves are the core's (messaging.presence): a user's first greeted socket on
any gateway announces ``online`` and the last one ``offline``, to the user's small
conversations only (large channels carry no presence or typing: it would multiply by
thousands). The counts are kept even while presence is shed, because the offline path reads
them to decide who gets a push.

Greetings and closes that arrive while a batch of count changes is being applied go together
in the next batch (messaging.inflight): one database thread call and one Redis round trip for all of them, and one
query for the conversations of the users who came online or went offline. A reconnect storm
greets hundreds of sockets at once, and three cache calls and a query each, every one a
thread hop, were a sixth of a gateway's CPU in the storm's profile. With nothing in flight a
change is applied at once, so a lone socket's presence is not delayed.
"""
from __future__ import annotations

import logging
from collections import Counter, defaultdict

from django.conf import settings

from messaging import presence
from messaging.events import presence_event, typing_event
from messaging.inflight import InFlightBatches
from messaging.layer import apublish, conversation_group
from messaging.models import Membership
from ops import degraded

from .db import DatabaseThreads

logger = logging.getLogger(__name__)


def _small_conversations(user_ids: list[int]) -> dict[int, list[int]]:
    """Each user's most recently active small conversations (at most
    ``PARLEY_PRESENCE_MAX_CONVERSATIONS``), in one query."""
    chosen: defaultdict[int, list[int]] = defaultdict(list)
    rows = (Membership.objects
            .filter(user_id__in=user_ids, conversation__member_count__lt=settings.PARLEY_LARGE_CHANNEL_THRESHOLD)
            .order_by("user_id", "-conversation__last_activity_at")
            .values_list("user_id", "conversation_id"))
    for user_id, conversation_id in rows:
        if len(chosen[user_id]) < settings.PARLEY_PRESENCE_MAX_CONVERSATIONS:
            chosen[user_id].append(conversation_id)
    return chosen


def _apply(deltas: dict[int, int], *, announce: bool) -> list[tuple[int, bool, list[int]]]:
    """Change the counts; for each user whose first socket came or last socket went, whether
    they are now online and (when ``announce``) the conversations to tell."""
    counts = presence.change_counts(deltas)
    flipped = {user_id: after > 0 for user_id, (before, after) in counts.items()
               if (before <= 0 < after) or (before > 0 and after == 0)}
    if not flipped:
        return []
    conversations = _small_conversations(list(flipped)) if announce else {}
    return [(user_id, online, conversations.get(user_id, [])) for user_id, online in flipped.items()]


class PresenceAnnouncer:
    def __init__(self, *, db: DatabaseThreads) -> None:
        self.db = db
        self._changes: InFlightBatches[tuple[int, int]] = InFlightBatches(self._apply)
        self.batches = 0  # batches that changed a count (tests compare it with the changes made)

    async def came_online(self, user_id: int) -> None:
        await self._changes.submit((user_id, +1))

    async def went_offline(self, user_id: int) -> None:
        await self._changes.submit((user_id, -1))

    async def _apply(self, changes: list[tuple[int, int]]) -> None:
        """Returns once the changes are counted (and announced, for the users they flip)."""
        summed: Counter[int] = Counter()
        for user_id, delta in changes:
            summed[user_id] += delta
        deltas = {user_id: delta for user_id, delta in summed.items() if delta}
        if not deltas:  # a user who left and came back within one batch changed nothing
            return
        self.batches += 1
        try:
            flips = await self.db(_apply)(deltas, announce=not degraded.sheds(degraded.PRESENCE))
        except Exception:  # noqa: BLE001 - presence is lossy by contract
            logger.info("presence counts of %d users unavailable", len(deltas), exc_info=True)
            return
        for user_id, online, conversation_ids in flips:
            for conversation_id in conversation_ids:
                await apublish(conversation_group(conversation_id), presence_event(user_id, online))

    async def typing(self, *, conversation_id: int, user_id: int) -> None:
        await apublish(conversation_group(conversation_id), typing_event(conversation_id, user_id))
