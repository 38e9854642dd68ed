"""The gateway's garbage collector: the loaded application frozen, collections rarer, pauses measured.

CPython's cyclic collector walks every tracked object of a generation. Once Django, the
application and daphne are loaded, a gateway holds about 140,000 of them that live as long as
the process; every full collection walked them again, with each socket's objects on top. In a
reconnect storm (1,000 sockets coming back at once, issue 15) a gateway grew by 100,000
objects in seconds: at the default thresholds that made one or two full collections of 150-340
ms each, with the process (and so every socket on it) stopped meanwhile, and about 0.8 s of
its 4 s storm spent in the collector.

So, right before the gateway serves:
* what is loaded is collected once and frozen (``gc.freeze``): it moves to a generation the
  collector never walks;
* the youngest generation is collected after ``PARLEY_GATEWAY_GC_THRESHOLDS[0]`` new tracked
  objects instead of 700, and the older ones after as many collections of the younger as the
  setting says. Almost all garbage here is freed by reference counting the moment it is
  dropped; the collector only finds cycles, which wait a little longer.

Each collection's pause is recorded, and the gateway's tick hands the pauses to
``parley_gc_pause_seconds`` (by generation), so an operator sees what the collector costs
before and after changing the thresholds (docs/operations.md). The collector's callback only
appends to a deque: a collection can start inside any allocation, including one made while a
metric holds its (non-reentrant) lock, so the callback must take no lock of its own.
"""
from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any

from django.conf import settings

from ops import metrics

_started: list[float] = []                                 # the running collection's start
_pauses: deque[tuple[int, float]] = deque(maxlen=10_000)  # (generation, seconds), not yet observed


def _record_pause(phase: str, info: dict[str, Any]) -> None:
    # One collection at a time (the GIL is held throughout), in whichever thread allocated.
    if phase == "start":
        _started[:] = [time.perf_counter()]
    elif _started:
        _pauses.append((info["generation"], time.perf_counter() - _started.pop()))


def settle() -> None:
    """Freeze what is loaded, set the thresholds, and record every collection from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.PARLEY_GATEWAY_GC_THRESHOLDS)
    if _record_pause not in gc.callbacks:
        gc.callbacks.append(_record_pause)


def observe_pauses() -> None:
    """The pauses recorded since the last call, into ``parley_gc_pause_seconds`` (the tick)."""
    while _pauses:
        generation, seconds = _pauses.popleft()
        metrics.GC_PAUSE.labels(str(generation)).observe(seconds)
