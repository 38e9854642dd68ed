"""Degraded mode: shed what may be shed, so that messages keep their latency under load.

DESIGN.md decision 10; docs/operations.md, "Degraded mode".

Invariant: **degraded mode never touches messages.** It has three levels, each shedding
what the one below sheds and more:

    level 0  normal
    level 1  typing and presence are shed: not published, not forwarded
    level 2  receipt broadcasts are deferred too: watermarks are still stored, and each
             gateway process keeps the latest marks per (conversation, user) and sends
             them when the level drops below 2 (or the client refreshes them over REST)

No level names messages, replay, acks or watermark writes, and :func:`sheds` answers only
for ``TYPING``, ``PRESENCE`` and ``RECEIPTS``.

Signals, shared through the cache by every gateway process and summed over the last
``PARLEY_DEGRADED_WINDOW_SECONDS``:

* ack-timeout ratio: frames whose ack did not come within ``PARLEY_ACK_TIMEOUT_MS``, over
  all frames whose ack was decided, once at least ``PARLEY_DEGRADED_MIN_ACKS`` were;
* queue lag: the age of the oldest waiting task in the queues ``PARLEY_DEGRADED_QUEUES``
  (ops.queues, read from the broker);
* a disconnect spike: disconnects over the average open connections, once there were at
  least ``PARLEY_DEGRADED_DISCONNECT_MIN`` disconnects;
* gateway lag: the share of gateway ticks (one a second per process) whose lag was over
  ``PARLEY_DEGRADED_GATEWAY_LAG_MS``, once there were ``PARLEY_DEGRADED_MIN_TICKS`` ticks. A
  tick's lag is the longest of: how late its event loop woke it, how old the oldest message
  event a socket handled since the last tick was (publish to handling, so the sockets'
  own queues count), and how long a call
  waited for a database thread. A flood (typing, say) queues ahead of messages on the loop,
  in the layer channel or in the thread pool, and this says so at the next tick, seconds
  before ack timeouts (2 s, then a window of them) can.

Hysteresis (:func:`step`). *Hot*: any signal above its enter threshold. *Calm*: every
signal below its exit threshold, which is lower. Hot at level 0 enters level 1 at once; hot
for ``PARLEY_DEGRADED_ESCALATE_SECONDS`` more climbs one level. Calm for
``PARLEY_DEGRADED_CALM_SECONDS`` drops one level, and the next drop needs another calm
period. Between the bounds nothing moves and both timers restart. A signal hovering at a
threshold therefore cannot make the mode flap.

Who decides: each gateway process ticks once a second (gateway.runtime). It adds
its counts to the shared window; the first gateway of each second (a lease key per second in
the cache) runs :func:`step` and stores the state; every gateway reads the state and tells
its sockets when the level changes. An admin override (ops.models.DegradedModeOverride) forces a level; the
automatic state keeps being tracked underneath and takes over again on "auto".
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from django.conf import settings
from django.core.cache import cache

from . import metrics, queues
from .models import DegradedModeOverride

logger = logging.getLogger(__name__)

TYPING, PRESENCE, RECEIPTS = "typing", "presence", "receipts"
SHED_BY_LEVEL: tuple[tuple[str, ...], ...] = ((), (TYPING, PRESENCE), (TYPING, PRESENCE, RECEIPTS))
MAX_LEVEL = len(SHED_BY_LEVEL) - 1

STATE_KEY = "parley:degraded:state"
LEASE_KEY = "parley:degraded:lease"
# Per-second buckets of the shared window, one key per kind and second.
KINDS = ("acks_in_time", "ack_timeouts", "disconnects", "sockets", "ticks", "late_ticks")


# --- Signals, thresholds and the state machine (pure) ----------------------------------------

@dataclass(frozen=True)
class Signals:
    acks_in_time: int = 0
    ack_timeouts: int = 0
    disconnects: int = 0
    ticks: int = 0        # gateway ticks in the window, all gateways
    late_ticks: int = 0   # of those, the ones lagging more than PARLEY_DEGRADED_GATEWAY_LAG_MS
    connections: float = 0.0  # open sockets, averaged over the window
    queue_lag: float = 0.0    # seconds, the worst of PARLEY_DEGRADED_QUEUES

    @property
    def acks(self) -> int:
        return self.acks_in_time + self.ack_timeouts

    @property
    def ack_timeout_ratio(self) -> float:
        return self.ack_timeouts / self.acks if self.acks else 0.0

    @property
    def disconnect_ratio(self) -> float:
        return self.disconnects / max(self.connections, 1.0)

    @property
    def late_tick_ratio(self) -> float:
        return self.late_ticks / self.ticks if self.ticks else 0.0


@dataclass(frozen=True)
class Thresholds:
    ack_timeout_ratio: float
    ack_timeout_ratio_exit: float
    min_acks: int
    queue_lag: float
    queue_lag_exit: float
    disconnect_ratio: float
    disconnect_ratio_exit: float
    min_disconnects: int
    late_tick_ratio: float
    late_tick_ratio_exit: float
    min_ticks: int
    escalate_after: float
    calm_for: float

    @classmethod
    def from_settings(cls) -> "Thresholds":
        return cls(
            ack_timeout_ratio=settings.PARLEY_DEGRADED_ACK_TIMEOUT_RATIO,
            ack_timeout_ratio_exit=settings.PARLEY_DEGRADED_ACK_TIMEOUT_RATIO_EXIT,
            min_acks=settings.PARLEY_DEGRADED_MIN_ACKS,
            queue_lag=settings.PARLEY_DEGRADED_QUEUE_LAG_SECONDS,
            queue_lag_exit=settings.PARLEY_DEGRADED_QUEUE_LAG_EXIT_SECONDS,
            disconnect_ratio=settings.PARLEY_DEGRADED_DISCONNECT_RATIO,
            disconnect_ratio_exit=settings.PARLEY_DEGRADED_DISCONNECT_RATIO_EXIT,
            min_disconnects=settings.PARLEY_DEGRADED_DISCONNECT_MIN,
            late_tick_ratio=settings.PARLEY_DEGRADED_LATE_TICK_RATIO,
            late_tick_ratio_exit=settings.PARLEY_DEGRADED_LATE_TICK_RATIO_EXIT,
            min_ticks=settings.PARLEY_DEGRADED_MIN_TICKS,
            escalate_after=settings.PARLEY_DEGRADED_ESCALATE_SECONDS,
            calm_for=settings.PARLEY_DEGRADED_CALM_SECONDS,
        )

    def hot(self, signals: Signals) -> tuple[str, ...]:
        """The signals above their enter thresholds."""
        reasons = []
        if signals.acks >= self.min_acks and signals.ack_timeout_ratio > self.ack_timeout_ratio:
            reasons.append("ack_timeouts")
        if signals.queue_lag > self.queue_lag:
            reasons.append("queue_lag")
        if signals.disconnects >= self.min_disconnects and signals.disconnect_ratio > self.disconnect_ratio:
            reasons.append("disconnects")
        if signals.ticks >= self.min_ticks and signals.late_tick_ratio > self.late_tick_ratio:
            reasons.append("gateway_lag")
        return tuple(reasons)

    def calm(self, signals: Signals) -> bool:
        """Every signal below its exit threshold (too few samples counts as below)."""
        return (
            (signals.acks < self.min_acks or signals.ack_timeout_ratio < self.ack_timeout_ratio_exit)
            and signals.queue_lag < self.queue_lag_exit
            and (signals.disconnects < self.min_disconnects or signals.disconnect_ratio < self.disconnect_ratio_exit)
            and (signals.ticks < self.min_ticks or signals.late_tick_ratio < self.late_tick_ratio_exit)
        )


@dataclass(frozen=True)
class State:
    level: int = 0
    since: float = 0.0               # when the level last changed
    hot_since: float | None = None   # hot without a break since then
    calm_since: float | None = None  # calm without a break since then (or since the last drop)
    reasons: tuple[str, ...] = ()    # what is hot now


def step(state: State, signals: Signals, now: float, thresholds: Thresholds) -> State:
    """The automatic level after one more look at the signals (the hysteresis above)."""
    reasons = thresholds.hot(signals)
    if reasons:
        if state.level == 0:
            return State(level=1, since=now, hot_since=now, reasons=reasons)
        hot_since = state.hot_since if state.hot_since is not None else now
        if state.level < MAX_LEVEL and now - hot_since >= thresholds.escalate_after:
            return State(level=state.level + 1, since=now, hot_since=now, reasons=reasons)
        return replace(state, hot_since=hot_since, calm_since=None, reasons=reasons)
    if thresholds.calm(signals) and state.level > 0:
        calm_since = state.calm_since if state.calm_since is not None else now
        if now - calm_since >= thresholds.calm_for:
            level = state.level - 1
            return State(level=level, since=now, calm_since=now if level else None)
        return replace(state, hot_since=None, calm_since=calm_since, reasons=())
    return replace(state, hot_since=None, calm_since=None, reasons=())


# --- What this process acts on ---------------------------------------------------------------

@dataclass(frozen=True)
class Mode:
    level: int = 0
    forced: bool = False

    @property
    def shed(self) -> tuple[str, ...]:
        return SHED_BY_LEVEL[self.level]


_mode = Mode()


def current() -> Mode:
    return _mode


def sheds(kind: str) -> bool:
    """Is ``kind`` (TYPING, PRESENCE or RECEIPTS) shed right now? Costs no I/O."""
    return kind in _mode.shed


def refresh() -> Mode:
    """Adopt the shared state as this process's mode (the gateway tick calls this)."""
    global _mode
    stored = cache.get(STATE_KEY) or {}
    _mode = Mode(level=int(stored.get("level", 0)), forced=bool(stored.get("forced", False)))
    metrics.DEGRADED_LEVEL.set(_mode.level)
    metrics.DEGRADED_FORCED.set(int(_mode.forced))
    return _mode


# --- The shared window ----------------------------------------------------------------------

def _bucket(kind: str, second: int) -> str:
    return f"parley:degraded:{kind}:{second}"


class Window:
    """One gateway process's counts since its last tick (kept on the event loop's thread)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(KINDS, 0)

    def add(self, kind: str, count: int = 1) -> None:
        self.counts[kind] += count

    def take(self, *, sockets: int) -> dict[str, int]:
        """The counts so far, with the open sockets now; counting starts again from zero."""
        counts, self.counts = {**self.counts, "sockets": sockets}, dict.fromkeys(KINDS, 0)
        return counts


def publish(counts: dict[str, int], *, now: float) -> None:
    """Add one gateway's counts to the shared window, in the bucket of ``now``'s second."""
    ttl = int(settings.PARLEY_DEGRADED_WINDOW_SECONDS) * 2 + 5
    for kind, count in counts.items():
        if count:
            key = _bucket(kind, int(now))
            cache.add(key, 0, ttl)
            cache.incr(key, count)


def read_signals(*, now: float, queue_lag: float | None = None) -> Signals:
    """The window's sums, from the complete seconds before ``now``; queue lag from the broker."""
    window = int(settings.PARLEY_DEGRADED_WINDOW_SECONDS)
    seconds = range(int(now) - window, int(now))
    stored = cache.get_many([_bucket(kind, s) for kind in KINDS for s in seconds])
    sums = {kind: sum(stored.get(_bucket(kind, s), 0) for s in seconds) for kind in KINDS}
    if queue_lag is None:
        watched = set(settings.PARLEY_DEGRADED_QUEUES)
        queue_lag = max((d.lag for d in queues.measure(now=now) if d.queue in watched), default=0.0)
    return Signals(acks_in_time=sums["acks_in_time"], ack_timeouts=sums["ack_timeouts"],
                   disconnects=sums["disconnects"], connections=sums["sockets"] / window, queue_lag=queue_lag,
                   ticks=sums["ticks"], late_ticks=sums["late_ticks"])


# --- Deciding (the first gateway of each second) ---------------------------------------

OVERRIDE_LEVELS = {"auto": None, "normal": 0, "shed_ephemeral": 1, "defer_receipts": 2}


def forced_level() -> int | None:
    mode = DegradedModeOverride.objects.filter(pk=1).values_list("mode", flat=True).first()
    return OVERRIDE_LEVELS.get(mode or "auto")


def evaluate(*, now: float | None = None, signals: Signals | None = None) -> dict[str, Any] | None:
    """Take this second's lease, step the automatic state, apply the override, store the result.

    Returns the stored state, or None when another process already evaluated this second.
    """
    now = time.time() if now is None else now
    # One evaluation per second of the clock, whichever gateway comes first.
    if not cache.add(f"{LEASE_KEY}:{int(now)}", os.getpid(), 5):
        return None
    signals = signals if signals is not None else read_signals(now=now)
    stored = cache.get(STATE_KEY) or {}
    try:
        previous = State(**stored.get("auto", {}))
    except TypeError:  # stored by another version of this module: start over
        previous = State()
    automatic = step(previous, signals, now, Thresholds.from_settings())
    forced = forced_level()
    level = automatic.level if forced is None else forced
    state = {"level": level, "forced": forced is not None, "auto": asdict(automatic),
             "signals": {**asdict(signals), "ack_timeout_ratio": signals.ack_timeout_ratio}, "at": now}
    cache.set(STATE_KEY, state, None)
    metrics.ACK_TIMEOUT_RATIO.set(signals.ack_timeout_ratio)
    if level != stored.get("level", 0):
        logger.warning("degraded mode level %s -> %s (%s)", stored.get("level", 0), level,
                       "forced by the admin override" if forced is not None else ", ".join(automatic.reasons) or "calm")
    return state


def shared_state() -> dict[str, Any]:
    """The last stored decision, for the admin."""
    return cache.get(STATE_KEY) or {"level": 0, "forced": False}


def do_set_override(*, mode: str, actor=None, note: str = "") -> None:
    """Force a level (or give control back to the signals, with "auto")."""
    if mode not in OVERRIDE_LEVELS:
        raise ValueError(f"unknown degraded-mode override {mode!r}")
    DegradedModeOverride.objects.update_or_create(
        pk=1, defaults={"mode": mode, "note": note, "updated_by": actor})
    logger.warning("degraded mode override set to %s by %s: %s", mode, actor or "system", note or "(no note)")
