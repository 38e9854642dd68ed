"""The offline path's short-lived state, in the shared cache (docs/notifications.md).

Two markers, both only hints on top of PostgreSQL's watermarks (a lost marker delays or
repeats a push, never loses a message):

* a conversation's open *burst*: the first message of a window enters it in the set of open
  bursts; later ones ride along until the beat's ``parley.push.due`` takes it and starts it;
* what a device *shows*: the message and the seq up to which a sent notification covers the
  conversation, so a read elsewhere can close it and a removal can withdraw it.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

from messaging.ratelimit import default_redis_client

from . import vapid


def enabled() -> bool:
    """Pushes go out only with VAPID keys: configured, or generated once (notifications.vapid)."""
    return vapid.current() is not None


def tag(conversation_id: int) -> str:
    """The notification tag, also the push service's Topic (at most 32 base64url characters),
    so the newest notification of a conversation replaces the older one on the device and in
    the push service's queue."""
    return f"conversation-{conversation_id}"


def _shown_key(conversation_id: int, user_id: int) -> str:
    return f"parley:push:shown:{conversation_id}:{user_id}"


# The open bursts: one sorted set, conversation id -> when its burst is due (opened + the
# window). The beat's parley.push.due takes what is due (take_due_bursts) and starts each
# burst's task, so the send path never enqueues anything itself: opening a burst is one round
# trip, where a Celery publish per burst had cost about a fifth of a send's CPU over 1,000
# busy conversations (issue 15).
_DUE_KEY = "parley:push:due"


def _due_key() -> str:
    """The set's key as the cache names it (its prefix and version), for the raw client."""
    return cache.make_and_validate_key(_DUE_KEY)


# The embedded defaults' stand-in for the set: their cache is this process's memory anyway.
_local_due: dict[int, float] = {}

# Open bursts this process knows of, by conversation: the time.monotonic() until which the
# burst is certainly open (its due time, less a margin for clocks). Until then a busy
# conversation's later sends from this process need not ask the cache (a round trip per
# send). Every process learns it: the one that opened the burst, and any that found it open.
_open_until: dict[int, float] = {}
_CLOCK_MARGIN_SECONDS = 1.0


def open_burst(conversation_id: int) -> bool:
    """Open the conversation's burst, due a window from now; False if one is already open.

    A burst whose start is lost (Redis restarted, the beat down for long) leaves its messages
    to the sweep, like a lost task.
    """
    if time.monotonic() < _open_until.get(conversation_id, 0.0):
        return False
    opened, due = _claim(conversation_id, time.time() + settings.PARLEY_PUSH_BURST_SECONDS)
    if due is not None:
        if len(_open_until) > 10_000:  # forget bursts long closed
            _open_until.clear()
        # Kept as a monotonic deadline, so a wall clock stepping later cannot stretch it.
        _open_until[conversation_id] = time.monotonic() + (due - _CLOCK_MARGIN_SECONDS - time.time())
    return opened


def _claim(conversation_id: int, due: float) -> tuple[bool, float | None]:
    """Enter the conversation as due at ``due`` unless it is in the set, in one round trip on
    Redis. ``(True, due)`` if this call entered it; else ``(False, when the open burst is
    due)``, or ``(False, None)`` if it was taken meanwhile (a burst starting at that moment,
    whose read of the store comes after this message's commit: nothing to open)."""
    client = default_redis_client()
    if client is None:
        held = _local_due.setdefault(conversation_id, due)
        return held == due, held
    key = _due_key()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {str(conversation_id): due}, nx=True)
    pipe.zscore(key, str(conversation_id))
    added, held = pipe.execute()
    return bool(added), held


def take_due_bursts(*, now: float, limit: int) -> list[int]:
    """Close the bursts due by ``now`` (at most ``limit``) and return their conversations.

    Each is taken by one caller (the one whose removal removed it), and closed before its
    burst reads the store: a message committing from now on opens the next burst, and every
    one committed before is in what this burst reads."""
    client = default_redis_client()
    if client is None:
        taken = [conversation_id for conversation_id, due in _local_due.items() if due <= now][:limit]
        for conversation_id in taken:
            del _local_due[conversation_id]
    else:
        key = _due_key()
        candidates = client.zrangebyscore(key, "-inf", now, start=0, num=limit)
        if not candidates:
            return []
        pipe = client.pipeline(transaction=False)
        for member in candidates:
            pipe.zrem(key, member)
        taken = [int(member) for member, removed in zip(candidates, pipe.execute()) if removed]
    for conversation_id in taken:
        _open_until.pop(conversation_id, None)
    return taken


def pending_bursts() -> dict[int, float]:
    """Every open burst: conversation id -> when it is due (time.time())."""
    client = default_redis_client()
    if client is None:
        return dict(_local_due)
    return {int(member): due for member, due in
            client.zrange(_due_key(), 0, -1, withscores=True)}


def close_burst(conversation_id: int) -> None:
    """Close the conversation's burst (if open) before it reads the store; see take_due_bursts."""
    _open_until.pop(conversation_id, None)  # run early here (Celery eager): the memo is over too
    client = default_redis_client()
    if client is None:
        _local_due.pop(conversation_id, None)
    else:
        client.zrem(_due_key(), str(conversation_id))


def note_shown(conversation_id: int, user_id: int, *, seq: int, upto: int) -> None:
    """A device now shows message ``seq``, covering the conversation up to ``upto``."""
    cache.set(_shown_key(conversation_id, user_id), {"seq": seq, "upto": upto},
              timeout=settings.PARLEY_PUSH_CLOSE_WINDOW_SECONDS)


def take_shown_if_read(conversation_id: int, user_id: int, read_seq: int) -> bool:
    """Consume the marker if ``read_seq`` covers all that the shown notification covers.

    Only reading all of it closes the notification; the delete lets one reader (of racing
    ones) send the close.
    """
    key = _shown_key(conversation_id, user_id)
    shown = cache.get(key)
    return shown is not None and read_seq >= shown["upto"] and bool(cache.delete(key))


def take_showing(conversation_id: int, user_ids: list[int], seq: int) -> list[int]:
    """Which of these users' devices show message ``seq``; their markers are consumed, so a
    later read sends no second close."""
    keys = {_shown_key(conversation_id, user_id): user_id for user_id in user_ids}
    showing = [keys[key] for key, shown in cache.get_many(list(keys)).items() if shown["seq"] == seq]
    cache.delete_many([_shown_key(conversation_id, user_id) for user_id in showing])
    return showing
