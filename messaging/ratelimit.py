"""Rate limits: one implementation behind every edge (docs/security.md, "Rate limits").

A limit counts events per identity (a user, an address, a hashed username) in the Django
cache: Redis in production, so every process counts together; local memory on the embedded
defaults. Its rate is a ``PARLEY_RATE_*`` setting, ``"<count>/<period>"`` with period
``s``, ``m``, ``h`` or ``d`` and an optional multiplier (``"30/s"``, ``"10/m"``, ``"1/2s"``);
slow mode takes its rate from the conversation.

Every edge answers a refusal alike: :class:`~messaging.errors.RateLimited` with
``retry_after_ms``, which REST renders as 429 with ``Retry-After`` and the gateway as
``send.error`` ``rate_limited`` with ``retry_after_ms``.

The counter is a sliding window approximated from two fixed windows: the previous window's
count, weighted by the share of it still inside the sliding window (in whole events), plus
the current one's. It takes the previous window's events as evenly spread: steady traffic is
limited exactly, and a burst at the end of one window cannot be followed at once by a second
at the start of the next, as fixed windows allow; uneven traffic can still get up to twice
the rate through over some period-long stretch. It needs only atomic increments (no
read-modify-write), and no wait is longer than the period. A rate of one event per period
(slow mode, typing) is a cooldown instead, exact to the millisecond: the last admitted
event's time, claimed with an atomic add. A refused event is not counted, so a client that
waits ``retry_after_ms`` gets in (unless others took the room first).

On a WebSocket, refusals alone never close a connection: :class:`RetryRule` tells each
refused frame its turn, and only a frame back before its turn, or past a hard cap far above
the frame rate, counts as abuse (4429 when it goes on).

When the cache is unreachable each limit fails the way its ``fail_open`` says: sends go on
(PostgreSQL alone decides what is stored; a warning is logged), while logins, signups and
tickets answer 503 (guessing must not run unlimited) and typing is dropped (it is lossy).

Moderators and staff pass the user-keyed limits when ``PARLEY_RATE_LIMIT_EXEMPT_MODERATORS``
is on. Whether a user is exempt is asked only when a limit would refuse, so the common path
costs no permission query.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Hashable, Mapping

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured

from .errors import RateLimited, Unavailable
from .models import MODERATE_PERMISSION

logger = logging.getLogger(__name__)

# The wall clock: windows must line up across processes. Tests replace it.
now = time.time

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# While the cache is down, one warning per limit per this many seconds, not one per event.
_OUTAGE_LOG_EVERY = 10.0
_outage_logged_at: dict[str, float] = {}


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float

    @staticmethod
    @lru_cache(maxsize=64)
    def parse(text: str) -> Rate:
        match = _RATE.match(text or "")
        if not match or int(match[1]) < 1 or (match[2] and int(match[2]) < 1):
            raise ImproperlyConfigured(f"a rate is '<count>/<period>' like '30/s' or '1/2s', not {text!r}")
        return Rate(int(match[1]), int(match[2] or 1) * _UNIT_SECONDS[match[3]])


@dataclass(frozen=True)
class Limit:
    name: str
    setting: str | None  # the PARLEY_RATE_* setting with the rate; None: the caller gives it
    fail_open: bool  # what to do while the cache is unreachable
    exemptable: bool = False  # keyed by a user whom PARLEY_RATE_LIMIT_EXEMPT_MODERATORS may exempt

    def rate(self) -> Rate:
        assert self.setting is not None, f"the {self.name} limit takes its rate from the caller"
        return Rate.parse(getattr(settings, self.setting))


SEND = Limit("send", "PARLEY_RATE_SEND", fail_open=True, exemptable=True)
SLOW_MODE = Limit("slow", None, fail_open=True, exemptable=True)
CHANGE = Limit("change", "PARLEY_RATE_CHANGE", fail_open=True, exemptable=True)  # edits, deletes, reactions
LOGIN_IP = Limit("login-ip", "PARLEY_RATE_LOGIN", fail_open=False)
LOGIN_USERNAME = Limit("login-user", "PARLEY_RATE_LOGIN", fail_open=False)
SIGNUP_IP = Limit("signup", "PARLEY_RATE_SIGNUP", fail_open=False)
WS_TICKET = Limit("ws-ticket", "PARLEY_RATE_WS_TICKET", fail_open=False, exemptable=True)
TYPING = Limit("typing", "PARLEY_RATE_TYPING", fail_open=False, exemptable=True)
UPLOAD = Limit("upload", "PARLEY_RATE_UPLOAD", fail_open=True, exemptable=True)  # files per user
SEARCH = Limit("search", "PARLEY_RATE_SEARCH", fail_open=True, exemptable=True)  # message searches per user


def enforce(limit: Limit, ident: Any, *, rate: Rate | None = None, user: Any = None) -> None:
    """Count one event of ``ident`` against ``limit``.

    Raises :class:`RateLimited` (with ``retry_after_ms``) when over the rate, and
    :class:`Unavailable` when the cache is down and the limit fails closed. ``user`` is the
    actor, for the moderator and staff exemption.
    """
    rate = rate or limit.rate()
    try:
        wait = _hit(f"parley:rl:{limit.name}:{ident}", rate)
    except Exception as exc:  # noqa: BLE001 - the counter store is unreachable
        _log_outage(limit)
        if limit.fail_open:
            return
        raise Unavailable("this service is briefly unavailable; try again", retry_after_ms=1000) from exc
    if wait and not (limit.exemptable and user is not None and is_exempt(user)):
        raise RateLimited("too many requests; try again shortly", retry_after_ms=wait, limit=limit.name,
                          interval=rate.seconds / rate.count)


def is_exempt(user: Any) -> bool:
    return bool(settings.PARLEY_RATE_LIMIT_EXEMPT_MODERATORS and user.is_active
                and (user.is_staff or user.has_perm(MODERATE_PERMISSION)))


def hashed(text: str) -> str:
    """A cache-safe identity for untrusted input (a username): keys never carry it raw."""
    return hashlib.sha256(text.strip().lower().encode("utf-8", "replace")).hexdigest()


def client_ip(meta: Mapping[str, Any]) -> str:
    """The client's address, for per-address limits.

    ``REMOTE_ADDR``, unless ``PARLEY_TRUSTED_PROXIES`` proxies stand in front: then the
    address the outermost of them saw, i.e. that many entries from the right of
    ``X-Forwarded-For``. Entries further left were written by the client and prove nothing.
    """
    proxies = settings.PARLEY_TRUSTED_PROXIES
    if proxies:
        forwarded = [a.strip() for a in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",") if a.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return str(meta.get("REMOTE_ADDR") or "unknown")


# --- The counter ----------------------------------------------------------------------------

def _window(at: float, rate: Rate) -> tuple[int, float]:
    """The fixed window ``at`` falls in, and how far into it."""
    index = math.floor(at / rate.seconds)
    return index, at - index * rate.seconds


def _carried(previous: int, elapsed: float, rate: Rate) -> int:
    """The previous window's events still inside the sliding window, taking them as evenly
    spread and counting whole events only. Whole events keep every wait within one period:
    at the start of the next window a full window carries ``count - 1``, so one more fits.
    The tolerance absorbs float rounding at the very moment a wait ends."""
    return max(0, math.floor(previous * (1 - elapsed / rate.seconds) - 1e-6))


def _wait_ms(rate: Rate, *, previous: int, current: int, elapsed: float) -> int:
    """0 if one more event fits beside ``current`` counted ones, else the ms until it would."""
    if _carried(previous, elapsed, rate) + current + 1 <= rate.count:
        return 0
    return _retry_after_ms(rate, previous=previous, current=current, elapsed=elapsed)


def _hit(key: str, rate: Rate) -> int:
    """Count one event in the cache; 0 if it is within the rate, else the ms until one would be."""
    if rate.count == 1:
        return _cooldown(f"{key}:{rate.seconds:g}", rate)
    window, elapsed = _window(now(), rate)
    current_key = f"{key}:{rate.seconds:g}:{window}"
    # Increment first: concurrent events from other processes then count each other.
    current, previous = _count(current_key, f"{key}:{rate.seconds:g}:{window - 1}",
                               timeout=math.ceil(2 * rate.seconds) + 1)
    wait = _wait_ms(rate, previous=previous, current=current - 1, elapsed=elapsed)
    if wait:
        cache.decr(current_key)  # a refused event does not count
    return wait


def _cooldown(key: str, rate: Rate) -> int:
    """One event per period: the key holds the time of the last one admitted."""
    at, timeout = now(), math.ceil(rate.seconds) + 1
    if cache.add(key, at, timeout=timeout):
        return 0
    last = cache.get(key)
    if last is not None and at < last + rate.seconds:
        return _ms(last + rate.seconds - at)
    # Past the period, but the key outlived it (its timeout is in whole seconds). Two events
    # racing in that moment may both pass: the price of not needing a compare-and-set.
    cache.set(key, at, timeout=timeout)
    return 0


def _count(current_key: str, previous_key: str, *, timeout: int) -> tuple[int, int]:
    """Count one event in the current window and read the previous window's count.

    On Redis this is one round trip (a pipeline of INCR, EXPIRE, GET) instead of Django's
    three (``incr`` is EXISTS then INCRBY, then a GET): every send pays it. Django's Redis
    serializer stores integers as plain numbers, so the counters stay readable through the
    cache API. Other caches (local memory on the embedded defaults) take the portable path.
    """
    client = default_redis_client()
    if client is None:
        return _increment(current_key, timeout=timeout), cache.get(previous_key, 0)
    current_raw = cache.make_and_validate_key(current_key)
    pipe = client.pipeline(transaction=False)
    pipe.incr(current_raw)
    # Refreshed on every event: the key outlives its window's last event by a window, which
    # is all "previous" needs (windows are keyed by number, so an old count is never reused).
    pipe.expire(current_raw, timeout)
    pipe.get(cache.make_and_validate_key(previous_key))
    current, _, previous = pipe.execute()
    return int(current), int(previous or 0)


def default_redis_client() -> Any:
    """The default cache's redis-py client, or None when the cache is not Redis (the embedded
    defaults' local memory): for counters that want one round trip (here, messaging.presence)."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    return backend._cache.get_client(write=True)  # type: ignore[attr-defined]  # Django has no public handle


def _increment(key: str, *, timeout: int) -> int:
    # The key lives two windows (it is the "previous" one during the next), so it cannot
    # expire between a successful increment and the end of its own window.
    try:
        return cache.incr(key)
    except ValueError:  # the window's first event
        if cache.add(key, 1, timeout=timeout):
            return 1
        return cache.incr(key)  # another process added it first


def _retry_after_ms(rate: Rate, *, previous: int, current: int, elapsed: float) -> int:
    """How long until one more event fits, if nothing else is counted meanwhile: at most a period.

    If this window has room, once the previous window's carried events drop to that room;
    if it is full, at the start of the next window (see :func:`_carried`).
    """
    room = rate.count - current - 1  # events that may be carried beside `current` and one more
    at = rate.seconds * (1 - (room + 1) / previous) if room >= 0 else rate.seconds
    return _ms(at - elapsed)


class ConnectionLimit:
    """The same sliding window counted in memory, for the limits of one WebSocket connection.

    A connection lives in one process, so its frames need no shared counter (and a cache
    round trip per frame would cost more than the frame).
    """

    def __init__(self, rate: Rate, *, clock: Callable[[], float] | None = None) -> None:
        self.rate = rate
        self.clock = clock or (lambda: now())
        self._window = self._previous = self._current = 0
        self._last: float | None = None  # the cooldown of a one-per-period rate

    def hit(self) -> int:
        """Count one event; 0 if it is within the rate, else the ms until one would be."""
        at = self.clock()
        if self.rate.count == 1:
            if self._last is not None and at < self._last + self.rate.seconds:
                return _ms(self._last + self.rate.seconds - at)
            self._last = at
            return 0
        window, elapsed = _window(at, self.rate)
        if window != self._window:
            self._previous = self._current if window == self._window + 1 else 0
            self._window, self._current = window, 0
        wait = _wait_ms(self.rate, previous=self._previous, current=self._current, elapsed=elapsed)
        if not wait:
            self._current += 1
        return wait


class RetryRule:
    """Which frames of one WebSocket connection are abuse, and when each refused one may come back.

    The 4429 rule (docs/security.md, "Rate limits"). Being refused is not abuse: a client
    that keeps several sends in flight has some of them refused however careful it is. So a
    connection is judged only by what it was told. Each refused frame's *key* (what the frame
    is: a send's ``client_msg_id``, a replay of one conversation, a ping; the gateway names
    it) is remembered with the time it was told to come back, and a frame is abuse only if

    * its key comes back before that time (less :attr:`TOLERANCE`, for timers that wake a
      little early and milliseconds rounded up), or
    * it goes past ``hard_cap``, a frame rate far above the connection's frame rate (acks
      are not counted at all).

    A retry that came on time and is refused again is told a new time, and is no abuse.

    **Turns.** Refused frames are told successive turns, one limit's interval (period /
    count) apart, per limit: the first waits what the limit says, the next one interval
    more, and so on. Told the same instant, eight waiting sends would all come back together
    and seven would be refused again, every interval, so a careful client's frame rate would
    grow with the sends it keeps in flight; told turns, it stays near the limit's rate
    whatever it keeps in flight (tests/messaging/test_ratelimit.py simulates both).

    A key is forgotten once its frame is let through. A client that never retries leaves
    keys behind; past ``max_keys`` the ones whose time has passed go first, then the oldest.
    Pure bookkeeping in memory (a connection lives in one process); the clock is injected.
    """

    TOLERANCE = 0.05  # seconds

    def __init__(self, hard_cap: Rate, *, clock: Callable[[], float] | None = None, max_keys: int = 256) -> None:
        self.clock = clock or (lambda: now())
        self.cap = ConnectionLimit(hard_cap, clock=self.clock)
        self.max_keys = max_keys
        self._told: dict[Hashable, float] = {}  # key -> when it may come back
        self._last_turn: dict[str, float] = {}  # limit -> the latest turn told

    def arrived(self, key: Hashable) -> int:
        """A frame arrived: 0 if it may be handled, else it is abuse and this many ms remain."""
        over_cap = self.cap.hit()
        told = self._told.get(key)
        at = self.clock()
        if told is not None and at < told - self.TOLERANCE:
            return _ms(told - at)
        return over_cap

    def refused(self, key: Hashable, wait_ms: int, *, limit: str, interval: float) -> int:
        """The frame was refused by ``limit`` (one event per ``interval`` seconds), which says
        one more fits in ``wait_ms``: the ms to tell the client, its turn."""
        at = self.clock()
        last = self._last_turn.get(limit)
        turn = at + wait_ms / 1000 if last is None else max(at + wait_ms / 1000, last + interval)
        self._last_turn[limit] = turn
        self._told.pop(key, None)  # re-inserted last: the oldest keys stay first
        if len(self._told) >= self.max_keys:
            for stale in [k for k, told in self._told.items() if told <= at]:
                del self._told[stale]
            while len(self._told) >= self.max_keys:
                del self._told[next(iter(self._told))]
        self._told[key] = turn
        return _ms(turn - at)

    def admitted(self, key: Hashable) -> None:
        """The frame was let through: its key starts afresh."""
        self._told.pop(key, None)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _log_outage(limit: Limit) -> None:
    at = time.monotonic()
    if at - _outage_logged_at.get(limit.name, -_OUTAGE_LOG_EVERY) >= _OUTAGE_LOG_EVERY:
        _outage_logged_at[limit.name] = at
        logger.warning("rate limit %s: the cache is unreachable; %s", limit.name,
                       "letting events through" if limit.fail_open else "refusing events", exc_info=True)
