"""The gateway process as a whole: its sockets, a tick once a second, a graceful restart.

docs/operations.md. One :data:`gateway` per daphne process, beside the hub.

Each socket carries a :class:`SocketTelemetry`: what it wrote (send-to-deliver per path,
fan-out dispatch) and the frames waiting for an ack (messaging.gateway.acktiming). Every
``PARLEY_GATEWAY_TICK_SECONDS`` the tick

1. times out the acks that did not come in time, on every socket;
2. writes the in-memory metric tallies out (messaging.metrics);
3. adds this process's acks, timeouts, disconnects and open sockets to the shared window
   and, if it is the first gateway to get there this second, evaluates degraded mode
   (messaging.degraded);
4. adopts the shared degraded level and, when it changed, tells every greeted socket
   (a ``degraded`` frame; leaving level 2 releases the receipts it deferred).

Restart: when daphne shuts down (SIGTERM), every socket gets
``{"type": "reconnect", "after_ms": N}`` and close code 1012 before the process stops
listening. N is drawn at random over a spread that grows with the number of sockets
(``PARLEY_RESTART_RECONNECT_RATE`` per second, at most
``PARLEY_RESTART_RECONNECT_MAX_SECONDS``), so the clients of a restarting gateway come
back spread out rather than all at once. Their acks are flushed on the way out.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import sys
import time
from datetime import datetime
from typing import Any, Callable, Protocol

from django.conf import settings

from messaging import degraded, metrics

from .db import control, take_queue_wait
from .acktiming import AckTracker
from .hub import hub

logger = logging.getLogger(__name__)

CLOSE_RESTARTING = 1012


class Socket(Protocol):
    helloed: bool
    telemetry: "SocketTelemetry"

    def deliver(self, event: dict[str, Any]) -> None: ...

    async def restart(self, *, after_ms: int) -> None: ...


def _created_at(message: dict[str, Any]) -> float:
    return datetime.fromisoformat(message["created_at"]).timestamp()


class SocketTelemetry:
    """What one connection measures. Cheap: in-memory tallies, no I/O."""

    def __init__(self) -> None:
        self.acks = AckTracker(timeout=settings.PARLEY_ACK_TIMEOUT_MS / 1000)
        self.opened_at = time.monotonic()

    def wrote(self, conversation_id: int, messages: list[dict[str, Any]], *, path: str,
              event: dict[str, Any] | None = None) -> None:
        """A frame carrying ``messages`` (one conversation, ascending seq) was written."""
        if not messages:
            return
        now = time.time()
        tally = metrics.DELIVERED[path]
        for message in messages:
            tally.observe(now - _created_at(message))
        if event is not None and "published_at" in event:
            metrics.FANOUT_DISPATCH.observe(now - event["published_at"])
        if path == "replay":
            metrics.REPLAYED.inc(len(messages))
        self.acks.written(conversation_id, messages[-1]["seq"], gateway.clock())

    def acked(self, conversation_id: int, seq: int) -> None:
        outcome = self.acks.acked(conversation_id, seq, gateway.clock())
        for latency in outcome.latencies:
            metrics.CLIENT_ACK.observe(latency)
        gateway.count_acks(in_time=len(outcome.latencies), timeouts=outcome.timeouts)

    def helloed(self, *, resumed: bool) -> None:
        metrics.RECONNECTS.labels(outcome="resumed" if resumed else "fresh").inc()


class GatewayProcess:
    def __init__(self) -> None:
        self.sockets: set[Socket] = set()
        self.window = degraded.Window()
        self.mode = degraded.Mode()
        self.clock: Callable[[], float] = time.monotonic
        self.draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._restart_hook = False
        self._tick_failing = False

    # --- sockets ---------------------------------------------------------------------------
    def opened(self, socket: Socket, *, started: float) -> None:
        """An authenticated socket (``started``: perf_counter at the handshake)."""
        self._ensure_running()
        metrics.observe_stage("gateway_auth", started)
        self.sockets.add(socket)
        metrics.OPEN_CONNECTIONS.inc()
        if self.draining:
            asyncio.get_running_loop().create_task(socket.restart(after_ms=self._reconnect_after_ms()))

    def closed(self, socket: Socket, *, code: int) -> None:
        if socket not in self.sockets:
            return
        self.sockets.discard(socket)
        metrics.OPEN_CONNECTIONS.dec()
        self.count_acks(in_time=0, timeouts=socket.telemetry.acks.close(self.clock()))
        if socket.helloed and code != CLOSE_RESTARTING:  # a planned restart is not a symptom
            metrics.DISCONNECTS.inc()
            self.window.add("disconnects")
        # In the socket's context: the line carries its connection, user and device ids.
        logger.info("socket closed with code %s after %.1f s", code, time.monotonic() - socket.telemetry.opened_at)

    def count_acks(self, *, in_time: int, timeouts: int) -> None:
        if in_time:
            metrics.ACKS_IN_TIME.inc(in_time)
            self.window.add("acks_in_time", in_time)
        if timeouts:
            metrics.ACK_TIMEOUTS.inc(timeouts)
            self.window.add("ack_timeouts", timeouts)

    # --- the tick ----------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:  # a new event loop (tests run one per test): start over
            metrics.OPEN_CONNECTIONS.dec(len(self.sockets))
            self.sockets.clear()
            self.window = degraded.Window()
            self.draining = False
        self._loop = loop
        self._task = loop.create_task(self._run(), name="parley-gateway-tick")
        self._install_restart_hook()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            interval = settings.PARLEY_GATEWAY_TICK_SECONDS
            asleep = loop.time()
            await asyncio.sleep(interval)
            # How late the loop woke us, how old the oldest event the hub got since, how long a
            # call waited for a database thread: what work on this process waited (degraded
            # mode's gateway-lag signal).
            self.note_lag(max(loop.time() - asleep - interval, hub.take_event_lag(), take_queue_wait()))
            try:
                await self.tick()
                self._tick_failing = False
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the cache may be down; try again next tick
                if not self._tick_failing:  # once per outage, not once a second
                    logger.warning("gateway tick failed; retrying every tick", exc_info=True)
                self._tick_failing = True

    def note_lag(self, lag: float) -> None:
        metrics.GATEWAY_LAG.observe(max(lag, 0.0))
        self.window.add("ticks")
        if lag * 1000 > settings.PARLEY_DEGRADED_GATEWAY_LAG_MS:
            self.window.add("late_ticks")

    async def tick(self, *, now: float | None = None) -> degraded.Mode:
        """One round of the duties above; ``now`` (wall clock) is for tests."""
        now = time.time() if now is None else now
        monotonic = self.clock()
        self.count_acks(in_time=0, timeouts=sum(s.telemetry.acks.expire(monotonic) for s in list(self.sockets)))
        metrics.flush()
        counts = self.window.take(sockets=len(self.sockets))
        mode = await control(self._share)(counts, now)
        if mode != self.mode:
            self.mode = mode
            event = {"type": "gateway.degraded", "shed": list(mode.shed)}
            for socket in list(self.sockets):
                socket.deliver(event)
            if degraded.RECEIPTS not in mode.shed:
                hub.receipts.release()  # after the degraded frame: what level 2 deferred, latest marks
        return mode

    def _share(self, counts: dict[str, int], now: float) -> degraded.Mode:
        degraded.publish(counts, now=now)
        degraded.evaluate(now=now)
        return degraded.refresh()

    # --- restart -------------------------------------------------------------------------------
    def _reconnect_after_ms(self) -> int:
        spread = len(self.sockets) / settings.PARLEY_RESTART_RECONNECT_RATE
        spread = min(max(spread, 1.0), settings.PARLEY_RESTART_RECONNECT_MAX_SECONDS)
        return int(random.uniform(0, spread) * 1000)

    def _install_restart_hook(self) -> None:
        """Under daphne (the Twisted reactor is running), drain the sockets before it stops."""
        reactor = sys.modules.get("twisted.internet.reactor")
        if self._restart_hook or reactor is None or not getattr(reactor, "running", False):
            return
        from twisted.internet import defer

        self._restart_hook = True
        _let_daphne_close_with_1012()

        def drain():
            # A fresh context: the trigger fires in whatever context the signal found.
            task = asyncio.get_running_loop().create_task(self.restart(), context=contextvars.Context())
            return defer.Deferred.fromFuture(task)

        reactor.addSystemEventTrigger("before", "shutdown", drain)

    async def restart(self) -> None:
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


def _let_daphne_close_with_1012() -> None:
    """autobahn lets an application close only with 1000 or 3000-4999, which refuses 1012
    ("Service Restart", registered for servers by IANA, and the contract's restart code).
    Daphne hands the ASGI close code to that check; 1012 goes out through autobahn's
    frame-level close instead, the same call autobahn uses for its own protocol errors."""
    from daphne.ws_protocol import WebSocketProtocol

    original = WebSocketProtocol.serverClose
    if getattr(original, "allows_1012", False):
        return

    def server_close(protocol, code=None):
        if code == CLOSE_RESTARTING:
            protocol.sendCloseFrame(code=code)
        else:
            original(protocol, code)

    server_close.allows_1012 = True
    WebSocketProtocol.serverClose = server_close


gateway = GatewayProcess()
