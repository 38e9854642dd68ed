"""One batch in flight: what is submitted while a batch is being applied goes in the next.

A reconnect storm asks for the same kind of work hundreds of times at once (the layer's
``group_add``, presence's count changes). Done one by one, each call costs a round trip, a
thread hop or a connection of its own; done together, one. Waiting for a timer would delay a
lone call, so nothing waits: the first submission is applied at the end of its turn of the
event loop, and whatever arrives while that batch is applied joins the next one.

Invariants:
* at most one batch is being applied at a time, and items are applied in the order submitted;
* ``submit`` returns when the batch holding its item has been applied, and raises what that
  batch's ``apply`` raised (every caller of a batch hears its failure);
* a caller that is cancelled leaves its batch alone (its item is still applied); if the worker
  itself is cancelled (its loop is closing), every waiting caller is cancelled and nothing is
  left half-queued.

Plain asyncio, no Django: the lowest floor, importable by the layer and the gateway alike.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class InFlightBatches(Generic[Item]):
    """Coalesces ``submit(item)`` calls on one event loop into calls of ``apply(items)``."""

    def __init__(self, apply: Callable[[list[Item]], Awaitable[None]], *,
                 on_idle: Callable[[], object] | None = None) -> None:
        self._apply = apply
        self._on_idle = on_idle          # called when the worker stops with nothing waiting
        self._waiting: list[Item] = []
        self._applied: asyncio.Future[None] | None = None  # resolved when the waiting items are
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0                 # batches applied (tests compare it with the calls made)

    async def submit(self, item: Item) -> None:
        loop = asyncio.get_running_loop()
        self._waiting.append(item)
        if self._applied is None:
            self._applied = loop.create_future()
        applied = self._applied
        if self._worker is None:
            self._worker = loop.create_task(self._work())
        await asyncio.shield(applied)  # a caller's cancellation leaves the others' batch alone

    async def _work(self) -> None:
        applied: asyncio.Future[None] | None = None
        try:
            await asyncio.sleep(0)  # the submissions of this turn of the loop join the first batch
            while self._waiting:
                items, applied = self._waiting, self._applied
                self._waiting, self._applied = [], None
                self.batches += 1
                try:
                    await self._apply(items)
                except Exception as error:  # noqa: BLE001 - every caller of this batch hears it
                    _settle(applied, error)
                else:
                    _settle(applied, None)
        finally:
            for unsettled in (applied, self._applied):  # cancelled (the loop is closing)
                if unsettled is not None and not unsettled.done():
                    unsettled.cancel()
            self._waiting, self._applied, self._worker = [], None, None
            if self._on_idle is not None:
                self._on_idle()


def _settle(applied: asyncio.Future[None] | None, error: BaseException | None) -> None:
    if applied is None or applied.done():
        return
    if error is None:
        applied.set_result(None)
    else:
        applied.set_exception(error)
        applied.add_done_callback(lambda future: future.exception())  # heard even if every caller left
