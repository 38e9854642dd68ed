"""A gateway process's shared machinery: one :class:`GatewayRuntime` per event loop.

A daphne process runs one event loop, so it has one runtime; tests run a loop per test, and
each gets a fresh one (:func:`current`), which the test stops at its end. Nothing else in
the gateway is a module-level singleton. The runtime owns:

* the hub (gateway.hub): the process's one layer channel and local dispatch to sockets;
* the receipt coalescer (gateway.receipts), the ack batcher (gateway.ackbatch), the shared
  gap fills and hello pages (gateway.fills), the replay admission budget (ops.admission),
  typing and presence announcements (gateway.presence);
* the database threads (gateway.db);
* the process duties (docs/operations.md): a tick every ``PARLEY_GATEWAY_TICK_SECONDS`` that

  1. times out the acks that did not come in time, on every socket;
  2. writes the in-memory metric tallies out (ops.metrics);
  3. adds this process's acks, devices timing out, disconnects, late ticks and open sockets
     to the shared window and evaluates degraded mode (ops.degraded);
  4. adopts the shared degraded level and, when it changed, tells every greeted socket
     (a ``degraded`` frame; leaving level 2 releases the receipts it deferred);

  and between ticks, every ``PARLEY_DEGRADED_FOLLOW_SECONDS``, reads the shared level alone
  and adopts it the same way: a level another gateway decided reaches this one's sockets
  within that, not at this process's next tick (up to a second later);

  and the drain on shutdown: every socket gets ``{"type": "reconnect", "after_ms": N}`` and
  close code 1012 (gateway.server), N drawn at random over a spread that grows with the
  number of sockets (``PARLEY_RESTART_RECONNECT_RATE`` per second, at most
  ``PARLEY_RESTART_RECONNECT_MAX_SECONDS``), so clients come back spread out.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Callable, Protocol

from django.conf import settings

from messaging.events import CLOSE_RESTARTING
from ops import degraded, metrics
from ops.admission import ReplayAdmission

from . import heap
from .ackbatch import AckBatcher
from .db import DatabaseThreads
from .fills import FillReader
from .hub import GatewayHub
from .notices import Degraded, Subscriber
from .presence import PresenceAnnouncer
from .receipts import ReceiptCoalescer
from .telemetry import ProcessCounts, SocketTelemetry

logger = logging.getLogger(__name__)


class Socket(Subscriber, Protocol):
    helloed: bool
    telemetry: SocketTelemetry

    async def restart(self, *, after_ms: int) -> None: ...


class GatewayRuntime:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.clock = clock  # monotonic, for ack timing; tests replace it
        self.db = DatabaseThreads()
        self.hub = GatewayHub(db=self.db, on_receipts=lambda event: self.receipts.add(event))
        self.receipts = ReceiptCoalescer(self.hub.sockets_of, call_later=loop.call_later)
        self.acks = AckBatcher(db=self.db)
        self.admission = ReplayAdmission()
        self.fills = FillReader(db=self.db, admission=self.admission)
        self.presence = PresenceAnnouncer(db=self.db)
        self.counts = ProcessCounts()
        self.cpu_per_delivery = metrics.CpuPerDelivery(settings.PARLEY_GATEWAY_CPU_WINDOW_SECONDS)
        self.sockets: set[Socket] = set()
        self.mode = degraded.Mode()
        self.draining = False
        self._duties: list[asyncio.Task[None]] = []
        self._tick_failing = False

    async def start(self) -> None:
        await self.hub.start()
        self._duties = [self.loop.create_task(self._tick_loop(), name="parley-gateway-tick"),
                        self.loop.create_task(self._follow_loop(), name="parley-gateway-follow")]

    async def stop(self) -> None:
        for duty in self._duties:
            duty.cancel()
        await asyncio.gather(*self._duties, return_exceptions=True)
        await self.hub.stop()
        metrics.OPEN_CONNECTIONS.dec(len(self.sockets))
        self.sockets.clear()
        self.db.shutdown()
        _runtimes.pop(self.loop, None)

    # --- sockets ---------------------------------------------------------------------------
    def telemetry(self) -> SocketTelemetry:
        return SocketTelemetry(self.counts, lambda: self.clock())

    def opened(self, socket: Socket, *, started: float) -> None:
        """An authenticated socket (``started``: perf_counter at the handshake)."""
        metrics.observe_stage("gateway_auth", started)
        self.sockets.add(socket)
        metrics.OPEN_CONNECTIONS.inc()
        if self.draining:
            self.loop.create_task(socket.restart(after_ms=self._reconnect_after_ms()))

    def closed(self, socket: Socket, *, code: int) -> None:
        if socket not in self.sockets:
            return
        self.sockets.discard(socket)
        metrics.OPEN_CONNECTIONS.dec()
        socket.telemetry.closed()
        if socket.helloed and code != CLOSE_RESTARTING:  # a planned restart is not a symptom
            self.counts.disconnect()
        # In the socket's context: the line carries its connection, user and device ids.
        logger.info("socket closed with code %s after %.1f s", code, time.monotonic() - socket.telemetry.opened_at)

    # --- the tick ----------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            interval = settings.PARLEY_GATEWAY_TICK_SECONDS
            asleep = self.loop.time()
            await asyncio.sleep(interval)
            # How late the loop woke us, how old the oldest event the hub got since, how long a
            # call waited for a database thread, how long clients' frames waited to be handled,
            # how long events have waited in the layer for the hub: what work on this process
            # waited (degraded mode's gateway-lag signal).
            late = self.loop.time() - asleep - interval
            backlog = await self.hub.layer_backlog(timeout=interval)
            metrics.LAYER_BACKLOG.set(backlog)
            self.counts.tick(max(late, self.hub.take_event_lag(), self.db.take_queue_wait(),
                                 self.counts.take_inbound_wait(), backlog))
            try:
                await self.tick()
                self._tick_failing = False
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the cache may be down; try again next tick
                if not self._tick_failing:  # once per outage, not once a second
                    logger.warning("gateway tick failed; retrying every tick", exc_info=True)
                self._tick_failing = True

    async def tick(self, *, now: float | None = None) -> degraded.Mode:
        """One round of the duties above; ``now`` (wall clock) is for tests."""
        now = time.time() if now is None else now
        monotonic = self.clock()
        self.counts.devices([s.telemetry for s in list(self.sockets)], now=monotonic)  # ack timeouts, per device
        metrics.GATEWAY_CPU_PER_DELIVERY.set(self.cpu_per_delivery.sample(
            at=monotonic, cpu=time.process_time(), deliveries=self.counts.delivered))
        heap.observe_pauses()
        metrics.flush()
        counts = self.counts.window.take(sockets=len(self.sockets))
        return self._adopt(await self.db.control(_share)(counts, now))

    async def _follow_loop(self) -> None:
        while True:
            await asyncio.sleep(settings.PARLEY_DEGRADED_FOLLOW_SECONDS)
            try:
                self._adopt(await self.db.control(degraded.refresh)())
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the cache may be down; the tick says so, once
                pass

    def _adopt(self, mode: degraded.Mode) -> degraded.Mode:
        """This process acts on ``mode`` from now on; the sockets hear of a change."""
        if mode != self.mode:
            self.mode = mode
            notice = Degraded(mode.shed)
            for socket in list(self.sockets):
                socket.deliver(notice)
            if degraded.RECEIPTS not in mode.shed:
                self.receipts.release()  # after the degraded frame: what level 2 deferred, latest marks
        return mode

    # --- shutdown ------------------------------------------------------------------------------
    def _reconnect_after_ms(self) -> int:
        spread = len(self.sockets) / settings.PARLEY_RESTART_RECONNECT_RATE
        spread = min(max(spread, 1.0), settings.PARLEY_RESTART_RECONNECT_MAX_SECONDS)
        return int(random.uniform(0, spread) * 1000)

    async def drain(self) -> None:
        """Ask every socket to come back elsewhere, spread out; bounded by the grace period."""
        self.draining = True
        sockets = list(self.sockets)
        logger.warning("gateway shutting down: closing %d sockets with 1012", len(sockets))
        closing = [socket.restart(after_ms=self._reconnect_after_ms()) for socket in sockets]
        try:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True),
                                   settings.PARLEY_GATEWAY_SHUTDOWN_GRACE_SECONDS)
        except asyncio.TimeoutError:
            logger.warning("gateway shutdown grace period over; the rest is repaired by replay")
        metrics.flush()


def _share(counts: dict[str, int], now: float) -> degraded.Mode:
    degraded.publish(counts, now=now)
    degraded.evaluate(now=now)
    return degraded.refresh()


_runtimes: dict[asyncio.AbstractEventLoop, asyncio.Task[GatewayRuntime]] = {}


async def current() -> GatewayRuntime:
    """The running loop's runtime, started on first use."""
    loop = asyncio.get_running_loop()
    starting = _runtimes.get(loop)
    if starting is None:
        for stale in [other for other in _runtimes if other.is_closed()]:
            del _runtimes[stale]  # a test's loop that ended without stopping its runtime
        starting = _runtimes[loop] = loop.create_task(_started(GatewayRuntime()))
    return await asyncio.shield(starting)


async def _started(runtime: GatewayRuntime) -> GatewayRuntime:
    try:
        await runtime.start()
    except BaseException:
        _runtimes.pop(runtime.loop, None)  # the next socket tries again
        raise
    return runtime


def running(loop: asyncio.AbstractEventLoop) -> GatewayRuntime | None:
    """The loop's runtime if it has started (the shutdown drain asks; it never starts one)."""
    starting = _runtimes.get(loop)
    if starting is None or not starting.done() or starting.cancelled() or starting.exception() is not None:
        return None
    return starting.result()
