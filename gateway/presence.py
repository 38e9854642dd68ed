"""Typing and presence announcements: lossy extras, never stored, never retried, shed first
(CONTRACT "Semantics" 6; ops.degraded).

The counts themselves are the core's (messaging.presence): a user's first greeted socket on
any gateway announces ``online`` and the last one ``offline``, to the user's small
conversations only (large channels carry no presence or typing: it would multiply by
thousands). The counts are kept even while presence is shed, because the offline path reads
them to decide who gets a push.
"""
from __future__ import annotations

import logging

from django.conf import settings

from messaging import presence
from messaging.events import presence_event, typing_event
from messaging.layer import apublish, conversation_group
from messaging.models import Membership
from ops import degraded

from .db import DatabaseThreads

logger = logging.getLogger(__name__)


def _small_conversations(user_id: int) -> list[int]:
    return list(
        Membership.objects.filter(
            user_id=user_id, conversation__member_count__lt=settings.PARLEY_LARGE_CHANNEL_THRESHOLD
        ).order_by("-conversation__last_activity_at").values_list("conversation_id", flat=True)[
            : settings.PARLEY_PRESENCE_MAX_CONVERSATIONS
        ]
    )


class PresenceAnnouncer:
    def __init__(self, *, db: DatabaseThreads) -> None:
        self.db = db

    async def came_online(self, user_id: int) -> None:
        await self._change(user_id, +1)

    async def went_offline(self, user_id: int) -> None:
        await self._change(user_id, -1)

    async def _change(self, user_id: int, delta: int) -> None:
        try:
            count = await self.db(presence.change_count)(user_id, delta)
        except Exception:  # noqa: BLE001 - presence is lossy by contract
            logger.info("presence count of %s unavailable", user_id, exc_info=True)
            return
        if count == (1 if delta > 0 else 0):
            await self._announce(user_id, online=delta > 0)

    async def _announce(self, user_id: int, *, online: bool) -> None:
        if degraded.sheds(degraded.PRESENCE):
            return  # the count above is still kept: the offline push path depends on it
        try:
            conversation_ids = await self.db(_small_conversations)(user_id)
        except Exception:  # noqa: BLE001 - presence is lossy by contract
            logger.info("presence announcement for %s failed", user_id, exc_info=True)
            return
        for conversation_id in conversation_ids:
            await apublish(conversation_group(conversation_id), presence_event(user_id, online))

    async def typing(self, *, conversation_id: int, user_id: int) -> None:
        await apublish(conversation_group(conversation_id), typing_event(conversation_id, user_id))
