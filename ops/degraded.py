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

The levels, the signals and when they shed (the pure state machine) are in ops.shedding;
this module shares each gateway's counts through the cache, decides, and holds the mode
this process acts on.

Who decides: each gateway process ticks once a second (gateway.runtime). It adds its counts
to the shared window and evaluates at once (a lock of up to 2 s in the cache keeps two
gateways from stepping the state together; the one that finds it taken leaves it to the
other), so the first gateway to see a flood decides without waiting for the next second.
Every gateway adopts the stored state at its tick, and between ticks every
``PARLEY_DEGRADED_FOLLOW_SECONDS`` (:func:`refresh` alone), and tells its sockets when the level
changes. An admin override (ops.models.DegradedModeOverride) forces a level; the automatic
state keeps being tracked underneath and takes over again on "auto".
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from . import metrics, queues
from .models import DegradedModeOverride
from .shedding import (
    PRESENCE,
    RECEIPTS,
    SHED_BY_LEVEL,
    TYPING,
    Hysteresis,
    Signals,
    State,
    Thresholds,
)

__all__ = ["PRESENCE", "RECEIPTS", "SHED_BY_LEVEL", "TYPING", "Mode", "current", "sheds", "refresh", "Window",
           "publish", "read_signals", "evaluate", "forced_level", "shared_state", "do_set_override"]

logger = logging.getLogger(__name__)

STATE_KEY = "parley:degraded:state"
LOCK_KEY = "parley:degraded:lock"
# Per-second buckets of the shared window, one key per kind and second.
KINDS = ("acks_in_time", "ack_timeouts", "acking_devices", "timing_out_devices", "disconnects", "sockets",
         "ticks", "late_ticks", "slow_ticks")


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
    """The window's sums up to ``now``, the second in progress included (a late tick counts at
    once); queue lag from the broker."""
    window, recent = int(settings.PARLEY_DEGRADED_WINDOW_SECONDS), int(settings.PARLEY_DEGRADED_LAG_WINDOW_SECONDS)
    seconds = range(int(now) - window + 1, int(now) + 1)
    stored = cache.get_many([_bucket(kind, s) for kind in KINDS for s in seconds])

    def total(kind: str, over: range = seconds) -> int:
        return sum(stored.get(_bucket(kind, s), 0) for s in over)

    if queue_lag is None:
        watched = set(settings.PARLEY_DEGRADED_QUEUES)
        queue_lag = max((d.lag for d in queues.measure(now=now) if d.queue in watched), default=0.0)
    last_seconds = range(int(now) - recent + 1, int(now) + 1)
    # Each gateway counts its sockets and devices once a tick, a tick a second: to averages.
    device_ticks_per_device = window
    return Signals(
        acks_in_time=total("acks_in_time"), ack_timeouts=total("ack_timeouts"),
        acking_devices=total("acking_devices"), timing_out_devices=total("timing_out_devices"),
        devices=total("acking_devices") / device_ticks_per_device,
        disconnects=total("disconnects"), connections=total("sockets") / device_ticks_per_device,
        ticks=total("ticks"), slow_ticks=total("slow_ticks"), late_ticks=total("late_ticks"),
        recent_ticks=total("ticks", last_seconds), recent_late_ticks=total("late_ticks", last_seconds),
        queue_lag=queue_lag)


# --- Deciding (every gateway, at its tick) -----------------------------------------------

OVERRIDE_LEVELS = {"auto": None, "normal": 0, "shed_ephemeral": 1, "defer_receipts": 2}


def forced_level() -> int | None:
    mode = DegradedModeOverride.objects.filter(pk=1).values_list("mode", flat=True).first()
    return OVERRIDE_LEVELS.get(mode or "auto")


def evaluate(*, now: float | None = None, signals: Signals | None = None) -> dict[str, Any] | None:
    """Step the automatic state with the window's signals, apply the override, store the result.

    Returns the stored state, or None when another process is evaluating right now (it holds
    the lock; its result is as fresh as ours would be).
    """
    now = time.time() if now is None else now
    if not cache.add(LOCK_KEY, os.getpid(), 2):
        return None
    try:
        signals = signals if signals is not None else read_signals(now=now)
        stored = cache.get(STATE_KEY) or {}
        try:
            previous = State(**stored.get("auto", {}))
        except TypeError:  # stored by another version of this module: start over
            previous = State()
        machine = Hysteresis(Thresholds.from_settings(), clock=lambda: now, state=previous)
        automatic = machine.observe(signals)
        forced = forced_level()
        level = automatic.level if forced is None else forced
        state = {"level": level, "forced": forced is not None, "auto": asdict(automatic),
                 "signals": {**asdict(signals), "ack_timeout_ratio": signals.ack_timeout_ratio,
                             "device_timeout_share": signals.device_timeout_share,
                             "late_tick_ratio": signals.late_tick_ratio},
                 "at": now}
        cache.set(STATE_KEY, state, None)
    finally:
        cache.delete(LOCK_KEY)
    metrics.ACK_TIMEOUT_RATIO.set(signals.ack_timeout_ratio)
    metrics.ACK_TIMEOUT_DEVICE_SHARE.set(signals.device_timeout_share)
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
