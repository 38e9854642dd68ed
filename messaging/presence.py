"""Who is online: a count of each user's greeted sockets across every gateway, in the shared cache.

Lossy by contract (CONTRACT "Semantics" 6) and never stored in PostgreSQL. Gateways change
the counts as sockets greet and close (gateway.presence announces the first and the last);
the offline path (notifications) and the members list read them.

Counts expire after :func:`ttl` unless a gateway that still holds a socket of the user
refreshes them (every gateway does, for its own users, each
``PARLEY_PRESENCE_REFRESH_SECONDS``). So a gateway killed mid-flight leaves its sockets
counted only while the user is really online elsewhere, and for at most one TTL after the
user's last real socket closes: the honest price of keeping presence off PostgreSQL, and the
longest a crash can delay a push.
"""
from __future__ import annotations

from django.conf import settings
from django.core.cache import cache


def ttl() -> int:
    return int(settings.PARLEY_PRESENCE_REFRESH_SECONDS * 3)


def _key(user_id: int) -> str:
    return f"parley:presence:{user_id}"


def change_count(user_id: int, delta: int) -> int:
    """Add ``delta`` to the user's socket count; returns the new count (never below 0)."""
    key = _key(user_id)
    cache.add(key, 0, ttl())
    try:
        value = cache.incr(key, delta)
    except ValueError:  # expired between add and incr
        cache.add(key, max(delta, 0), ttl())
        value = max(delta, 0)
    if value < 0:
        cache.set(key, 0, ttl())
        value = 0
    cache.touch(key, ttl())
    return value


def online_user_ids(user_ids: list[int]) -> set[int]:
    """Which of these users have a greeted socket on some gateway."""
    counts = cache.get_many([_key(u) for u in user_ids])
    return {u for u in user_ids if counts.get(_key(u), 0) > 0}


def refresh(user_ids: list[int]) -> None:
    """Keep alive the counts of users with a socket on the calling gateway."""
    for user_id in user_ids:
        cache.touch(_key(user_id), ttl())
