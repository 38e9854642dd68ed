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

from datetime import datetime, timezone

from django.conf import settings
from django.core.cache import cache

from messaging.ratelimit import default_redis_client


def ttl() -> int:
    return int(settings.PARLEY_PRESENCE_REFRESH_SECONDS * 3)


def _key(user_id: int) -> str:
    return f"parley:presence:{user_id}"


def _seen_key(user_id: int) -> str:
    return f"parley:last-seen:{user_id}"


def change_count(user_id: int, delta: int) -> int:
    """Add ``delta`` to the user's socket count; returns the new count (never below 0)."""
    return change_counts({user_id: delta})[user_id][1]


def change_counts(deltas: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Add each user's delta to their socket count: ``{user: (count before, count after)}``.

    Counts never go below 0, and every count touched lives another :func:`ttl`. On Redis this
    is one round trip for any number of users (a reconnect storm greets hundreds at once);
    other caches take the portable path, a few calls per user.
    """
    client = default_redis_client()
    if client is None:
        counts = {user_id: _change_portably(user_id, delta) for user_id, delta in deltas.items()}
    else:
        keys = {user_id: cache.make_and_validate_key(_key(user_id)) for user_id in deltas}
        lifetime = ttl()
        pipe = client.pipeline(transaction=False)
        for user_id, delta in deltas.items():
            pipe.incrby(keys[user_id], delta)
            pipe.expire(keys[user_id], lifetime)
        raised = dict(zip(deltas, map(int, pipe.execute()[::2])))
        counts = {user_id: (value - deltas[user_id], max(value, 0)) for user_id, value in raised.items()}
        below_zero = [keys[user_id] for user_id, value in raised.items() if value < 0]
        if below_zero:  # more closes counted than greetings (a count that expired meanwhile)
            pipe = client.pipeline(transaction=False)
            for key in below_zero:
                pipe.set(key, 0, ex=lifetime)
            pipe.execute()
    # "Last seen": when the user's last socket closed. As lossy as presence (a crashed
    # gateway's users simply expire, unrecorded), and kept only
    # PARLEY_PRESENCE_LAST_SEEN_SECONDS: it is a courtesy, not a record.
    now = datetime.now(timezone.utc).timestamp()
    seen = {_seen_key(user_id): now for user_id, (_, after) in counts.items() if after == 0 and deltas[user_id] < 0}
    if seen:
        cache.set_many(seen, settings.PARLEY_PRESENCE_LAST_SEEN_SECONDS)
    return counts


def _change_portably(user_id: int, delta: int) -> tuple[int, int]:
    key = _key(user_id)
    cache.add(key, 0, ttl())
    try:
        value = cache.incr(key, delta)
    except ValueError:  # expired between add and incr
        cache.add(key, max(delta, 0), ttl())
        value = max(delta, 0)
    before = value - delta
    if value < 0:
        cache.set(key, 0, ttl())
        value = 0
    cache.touch(key, ttl())
    return before, value


def online_user_ids(user_ids: list[int]) -> set[int]:
    """Which of these users have a greeted socket on some gateway."""
    counts = cache.get_many([_key(u) for u in user_ids])
    return {u for u in user_ids if counts.get(_key(u), 0) > 0}


def last_seen(user_ids: list[int]) -> dict[int, datetime]:
    """When these users' last socket closed, for those the cache still remembers."""
    stamps = cache.get_many([_seen_key(u) for u in user_ids])
    return {u: datetime.fromtimestamp(stamps[_seen_key(u)], timezone.utc)
            for u in user_ids if isinstance(stamps.get(_seen_key(u)), (int, float))}


def refresh(user_ids: list[int]) -> None:
    """Keep alive the counts of users with a socket on the calling gateway."""
    for user_id in user_ids:
        cache.touch(_key(user_id), ttl())
