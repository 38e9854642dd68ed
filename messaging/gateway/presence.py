"""Typing and presence: lossy extras, never stored, never retried (CONTRACT "Semantics" 6).

Presence counts a user's open, greeted sockets across every gateway in the shared cache
(Redis in production). The first socket announces ``online`` and the last ``offline`` to the
user's small conversations. Counts expire after ``_ttl()`` unless a gateway
that still holds a socket of the user refreshes them (every hub does, for its local users,
each ``PARLEY_PRESENCE_REFRESH_SECONDS``). So a gateway killed mid-flight leaves its sockets
counted only while the user is really online elsewhere, and for at most one TTL after the
user's last real socket closes: the honest price of keeping presence off PostgreSQL. The
offline path (Web Push) reads the same counts, so that is also the longest a crash can
delay a push.
"""
from __future__ import annotations

import logging

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from messaging import degraded, fanout
from messaging.models import Membership

from .db import db

logger = logging.getLogger(__name__)



def _ttl() -> int:
    return int(settings.PARLEY_PRESENCE_REFRESH_SECONDS * 3)


def _key(user_id: int) -> str:
    return f"parley:presence:{user_id}"


def _change_count(user_id: int, delta: int) -> int:
    key = _key(user_id)
    cache.add(key, 0, _ttl())
    try:
        value = cache.incr(key, delta)
    except ValueError:  # expired between add and incr
        cache.add(key, max(delta, 0), _ttl())
        value = max(delta, 0)
    if value < 0:
        cache.set(key, 0, _ttl())
        value = 0
    cache.touch(key, _ttl())
    return value


def _small_conversations(user_id: int) -> list[int]:
    return list(
        Membership.objects.filter(
            user_id=user_id, conversation__member_count__lt=settings.PARLEY_LARGE_CHANNEL_THRESHOLD
        ).order_by("-conversation__last_activity_at").values_list("conversation_id", flat=True)[
            : settings.PARLEY_PRESENCE_MAX_CONVERSATIONS
        ]
    )


async def _announce(user_id: int, online: bool) -> None:
    if degraded.sheds(degraded.PRESENCE):
        return  # the count above is still kept: the offline push path depends on it
    try:
        conversation_ids = await db(_small_conversations)(user_id)
        layer = get_channel_layer()
        for conversation_id in conversation_ids:
            group = fanout.conversation_group(conversation_id)
            await layer.group_send(group, {"type": "conv.presence", "group": group, "user": user_id, "online": online})
    except Exception:  # noqa: BLE001 - presence is lossy by contract
        logger.info("presence announcement for %s failed", user_id, exc_info=True)


async def came_online(user_id: int) -> None:
    try:
        count = await db(_change_count)(user_id, 1)
    except Exception:  # noqa: BLE001
        return
    if count == 1:
        await _announce(user_id, True)


async def went_offline(user_id: int) -> None:
    try:
        count = await db(_change_count)(user_id, -1)
    except Exception:  # noqa: BLE001
        return
    if count == 0:
        await _announce(user_id, False)


async def publish_typing(*, conversation_id: int, user_id: int) -> None:
    group = fanout.conversation_group(conversation_id)
    try:
        await get_channel_layer().group_send(
            group, {"type": "conv.typing", "group": group, "conversation": conversation_id, "user": user_id}
        )
    except Exception:  # noqa: BLE001 - typing is lossy by contract
        logger.info("typing publish failed", exc_info=True)


def online_user_ids(user_ids: list[int]) -> set[int]:
    """Which of these users have a greeted socket on some gateway (sync; for tasks and services)."""
    counts = cache.get_many([_key(u) for u in user_ids])
    return {u for u in user_ids if counts.get(_key(u), 0) > 0}


def refresh(user_ids: list[int]) -> None:
    """Keep alive the counts of users with a socket on this gateway (sync; the hub calls it)."""
    for user_id in user_ids:
        cache.touch(_key(user_id), _ttl())
