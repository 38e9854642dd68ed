"""The offline path's short-lived state, in the shared cache (docs/notifications.md).

Two markers, both only hints on top of PostgreSQL's watermarks (a lost marker delays or
repeats a push, never loses a message):

* a conversation's open *burst*: the first message of a window opens it and schedules the
  burst task; later ones ride along until the task closes it;
* what a device *shows*: the message and the seq up to which a sent notification covers the
  conversation, so a read elsewhere can close it and a removal can withdraw it.
"""
from __future__ import annotations

import math
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


def _burst_key(conversation_id: int) -> str:
    return f"parley:push:burst:{conversation_id}"


def _shown_key(conversation_id: int, user_id: int) -> str:
    return f"parley:push:shown:{conversation_id}:{user_id}"


# Open bursts this process knows of, by conversation: the time.monotonic() until which the
# burst is certainly open. A burst's task runs its countdown after the burst opened, so until
# then (less a margin for clocks) the key is there, and a busy conversation's later sends from
# this process need not ask the cache (a round trip per send). Every process learns it: the one
# that opened the burst, and any that found it open (the key holds when it was opened).
_open_until: dict[int, float] = {}
_CLOCK_MARGIN_SECONDS = 1.0


def open_burst(conversation_id: int) -> bool:
    """Open the conversation's burst; False if one is already open.

    The key outlives the window so a slow queue does not start a second burst; a lost task
    leaves it to expire, and the sweep has caught up by then.
    """
    if time.monotonic() < _open_until.get(conversation_id, 0.0):
        return False
    timeout = settings.PARLEY_PUSH_BURST_SECONDS + settings.PARLEY_PUSH_SWEEP_INTERVAL_SECONDS
    opened, opened_at = _claim(_burst_key(conversation_id), time.time(), timeout=timeout)
    if opened_at is not None:
        if len(_open_until) > 10_000:  # forget bursts long closed
            _open_until.clear()
        # Kept as a monotonic deadline, so a wall clock stepping later cannot stretch it.
        _open_until[conversation_id] = time.monotonic() + (
            opened_at + settings.PARLEY_PUSH_BURST_SECONDS - _CLOCK_MARGIN_SECONDS - time.time())
    return opened


def _claim(key: str, now: float, *, timeout: float) -> tuple[bool, float | None]:
    """Set ``key`` to ``now`` unless it is set, in one round trip on Redis. ``(True, now)`` if
    this call set it; else ``(False, when the burst that holds it opened)``, or ``(False, None)``
    if it vanished meanwhile (a burst closing at that moment, whose read of the store comes
    after this message's commit: nothing to open)."""
    client = default_redis_client()
    if client is None:  # the embedded defaults' local memory
        if cache.add(key, now, timeout=timeout):
            return True, now
        return False, cache.get(key)
    raw_key = cache.make_and_validate_key(key)
    pipe = client.pipeline(transaction=False)
    pipe.set(raw_key, repr(now), nx=True, ex=math.ceil(timeout))
    pipe.get(raw_key)
    claimed, held = pipe.execute()
    if claimed:
        return True, now
    return False, float(held) if held is not None else None


def close_burst(conversation_id: int) -> None:
    """Called before the burst reads the store: a message committing from now on starts the
    next burst, and every one committed before is in what this burst reads."""
    _open_until.pop(conversation_id, None)  # run early here (Celery eager): the memo is over too
    cache.delete(_burst_key(conversation_id))


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
