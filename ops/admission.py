"""Reconnect-storm admission control: replay goes through a bounded budget, small gaps first.

docs/operations.md, "Admission control". When a gateway restarts or a network blip drops
thousands of sockets at once, they all come back with ``hello`` and each one reads what it
missed from PostgreSQL. Unbounded, those reads fill the gateway's database threads, sends
queue behind them, and everyone becomes ready late. So the replay part of a hello (the read
of each first page, shared by every socket of the process that asks for the same page:
gateway.fills), and every later ``replay`` page, first takes a slot of this process's budget:

* at most ``PARLEY_REPLAY_CONCURRENCY`` replays run at once per gateway process, leaving the
  rest of the database threads to sends, acks and live gap fills (which never wait here);
* waiters are served earliest *virtual deadline* first: arrival time plus
  ``PARLEY_REPLAY_ADMISSION_MS_PER_MESSAGE`` for every message the client is behind. Among
  clients that arrive together, the ones with small gaps are served first and are ready in
  one short page; a client far behind waits longer, but a stream of later small gaps can
  overtake it only for as long as its gap is worth, so nobody waits forever.

The budget is per process: N gateways put at most N x ``PARLEY_REPLAY_CONCURRENCY`` replay
queries on the database at once, whatever the size of the storm.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from django.conf import settings

from . import metrics


class ReplayAdmission:
    def __init__(self, capacity: int | None = None, *, ms_per_message: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = capacity
        self._ms_per_message = ms_per_message
        self.clock = clock
        self.running = 0
        self.waiting = 0
        # (virtual deadline, arrival order, future); a cancelled waiter stays until popped.
        self._waiters: list[tuple[float, int, asyncio.Future]] = []
        self._order = itertools.count()

    @property
    def capacity(self) -> int:
        return self._capacity if self._capacity is not None else settings.PARLEY_REPLAY_CONCURRENCY

    @asynccontextmanager
    async def slot(self, *, behind: int) -> AsyncIterator[None]:
        """Hold one slot of the budget; ``behind`` is how many messages the client is missing.

        Nothing behind means nothing to read: no slot is taken.
        """
        if behind <= 0:
            yield
            return
        started = self.clock()
        if self.running < self.capacity and not self.waiting:
            self.running += 1
        else:
            await self._wait(started, behind)
        metrics.ADMISSION_WAIT.observe(self.clock() - started)
        try:
            yield
        finally:
            self._release()

    async def _wait(self, arrived: float, behind: int) -> None:
        ms_per_message = (self._ms_per_message if self._ms_per_message is not None
                          else settings.PARLEY_REPLAY_ADMISSION_MS_PER_MESSAGE)
        deadline = arrived + max(behind, 0) * ms_per_message / 1000
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (deadline, next(self._order), future))
        self.waiting += 1
        metrics.ADMISSION_WAITING.inc()
        try:
            await future  # resolved by _release, which hands its slot over (running unchanged)
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed a slot, but the socket went away first: pass it on
            raise
        finally:
            self.waiting -= 1
            metrics.ADMISSION_WAITING.dec()

    def _release(self) -> None:
        while self._waiters:
            *_, future = heapq.heappop(self._waiters)
            if not future.done():  # a cancelled waiter is skipped
                future.set_result(None)
                return
        self.running -= 1

