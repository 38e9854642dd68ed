"""A clock the test moves, with the timers that run off it: no test sleeps against real time."""
from __future__ import annotations

import heapq
import itertools
from typing import Callable


class ManualClock:
    """``clock()`` is the time now; ``call_later(delay, callback)`` is ``loop.call_later``'s
    shape; :meth:`advance` moves time on and runs the callbacks that fall due, in order."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (self.now + max(delay, 0.0), next(self._order), callback))

    def advance(self, seconds: float = 0.0) -> None:
        until = self.now + seconds
        while self._timers and self._timers[0][0] <= until:
            due, _, callback = heapq.heappop(self._timers)
            self.now = max(self.now, due)
            callback()
        self.now = until
