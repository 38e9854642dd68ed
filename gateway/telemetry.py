"""What one connection measures, and what its process sums for degraded mode (docs/operations.md).

Cheap: in-memory tallies, no I/O. Each socket notes the frames it wrote (send-to-deliver per
path, fan-out dispatch) and the acks that answered them (ops.acktiming); the process's
:class:`Window` collects acks, timeouts, disconnects and late ticks until the runtime's tick
adds them to the shared degraded-mode window. Ack timeouts reach degraded mode per device:
at each tick, how many sockets had acks decided since the last one, and how many of those had
a timeout (one socket that stops acking is one device, however many frames it leaves).
"""
from __future__ import annotations

import heapq
import math
import time
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

from django.conf import settings

from messaging.payloads import MessagePayload
from ops import degraded, metrics
from ops.acktiming import AckTracker

from . import inbound


def _created_at(message: MessagePayload) -> float:
    return _timestamp(message["created_at"])


@lru_cache(maxsize=4096)
def _timestamp(created_at: str) -> float:
    """Parsed once per process, not once per socket the message reaches."""
    return datetime.fromisoformat(created_at).timestamp()


def _ranked(waits: Iterable[float]) -> float:
    """The wait ranked as :meth:`ProcessCounts.take_inbound_wait` says; 0 with too few sockets."""
    waits = list(waits)
    rank = max(settings.PARLEY_DEGRADED_INBOUND_MIN_SOCKETS,
               math.ceil(settings.PARLEY_DEGRADED_INBOUND_SOCKET_SHARE * len(waits)))
    if len(waits) < rank:
        return 0.0
    return heapq.nlargest(rank, waits)[-1]


class ProcessCounts:
    """The process's share of degraded mode's signals since the last tick."""

    def __init__(self) -> None:
        self.window = degraded.Window()
        self._inbound_waits: dict[object, float] = {}  # socket -> the longest its frames waited, since the tick
        self.delivered = 0  # messages written to sockets, ever (the CPU-per-delivery gauge)
        # Since the tick: clients' frames and events the sockets handled, and how many of them
        # were typing that went on (what degraded mode sheds first).
        self.frames = 0
        self.typing_frames = 0

    def inbound_wait(self, socket: object, seconds: float) -> None:
        """A frame of ``socket`` waited ``seconds`` in its inbound queue before being handled."""
        if seconds > self._inbound_waits.get(socket, 0.0):
            self._inbound_waits[socket] = seconds

    def handled(self, count: int = 1) -> None:
        """Sockets are handling ``count`` more clients' frames or events (from the hub or the
        runtime)."""
        self.frames += count

    def typing(self) -> None:
        """One of the frames or events handled was typing, and went on (a client's frame past
        the throttle, or an event written to a socket)."""
        self.typing_frames += 1

    def take_inbound_wait(self) -> float:
        """How long clients' frames waited to be handled, as the server's lag: the longer of
        the waits of frames handled since the last call and the ages of the frames still
        queued now (gateway.inbound: a backlog counts as it builds, not once it is served).
        Each is the wait of the socket ranked ``PARLEY_DEGRADED_INBOUND_MIN_SOCKETS`` (or
        ``PARLEY_DEGRADED_INBOUND_SOCKET_SHARE`` of the sockets concerned, if more) from the
        longest. A socket's frames also wait behind its own earlier ones, so one client
        sending a burst waits on itself; many sockets waiting at once is the server."""
        waits, self._inbound_waits = self._inbound_waits, {}
        return max(_ranked(waits.values()), _ranked(inbound.queued_ages(time.monotonic())))

    def acks(self, *, in_time: int, timeouts: int) -> None:
        if in_time:
            metrics.ACKS_IN_TIME.inc(in_time)
            self.window.add("acks_in_time", in_time)
        if timeouts:
            metrics.ACK_TIMEOUTS.inc(timeouts)
            self.window.add("ack_timeouts", timeouts)

    def devices(self, sockets: Iterable["SocketTelemetry"], *, now: float) -> None:
        """The tick's per-device count: time out what is overdue on each socket, then count the
        sockets that had acks decided since the last tick and those among them that timed out."""
        acking = timing_out = 0
        for socket in sockets:
            socket.expire(now)
            decided, timed_out = socket.take_device_outcome()
            acking += decided
            timing_out += timed_out
        self.device_outcomes(acking=acking, timing_out=timing_out)

    def device_outcomes(self, *, acking: int, timing_out: int) -> None:
        if acking:
            self.window.add("acking_devices", acking)
        if timing_out:
            self.window.add("timing_out_devices", timing_out)

    def disconnect(self) -> None:
        metrics.DISCONNECTS.inc()
        self.window.add("disconnects")

    def take_typing_share(self) -> float:
        """The share of the frames and events handled since the last call that were typing (0
        when none were handled); counting starts again."""
        frames, typing = self.frames, self.typing_frames
        self.frames = self.typing_frames = 0
        # At most 1: a frame counted before the last tick can reach its typing after it.
        return min(typing / frames, 1.0) if frames else 0.0

    def tick(self, lag: float) -> None:
        """One tick, lagging ``lag`` seconds (the gateway-lag signal).

        Late: lagging over ``PARLEY_DEGRADED_GATEWAY_LAG_MS``, or over the lower
        ``PARLEY_DEGRADED_TYPING_LAG_MS`` while typing was at least
        ``PARLEY_DEGRADED_TYPING_SHARE`` of what the sockets handled since the last tick.
        Shedding typing is what degraded mode does first; when it is most of the work and the
        rest already waits for it, shedding gives messages their latency back before the
        backlog reaches the higher line. A typing flood the gateways almost absorb kept the lag
        at 0.05-0.7 s for tens of seconds while messages waited 0.3-0.7 s (p95), so the level
        alone told clients 2-20 s in (issue 15, goal 5). Messages alone (the gateway ladder)
        never meet the share. Presence is not counted: it comes in bursts with connections,
        batched, and 200 devices connecting at once made it 82% of a second's work at 71 ms of
        lag, which is no overload; connection storms are judged by the higher line."""
        metrics.GATEWAY_LAG.observe(max(lag, 0.0))
        typing_share = self.take_typing_share()
        metrics.GATEWAY_TYPING_SHARE.set(typing_share)
        self.window.add("ticks")
        lag_ms = lag * 1000
        if lag_ms > settings.PARLEY_DEGRADED_CORROBORATING_LAG_MS:
            self.window.add("slow_ticks")
        if lag_ms > settings.PARLEY_DEGRADED_GATEWAY_LAG_MS or (
                lag_ms > settings.PARLEY_DEGRADED_TYPING_LAG_MS
                and typing_share >= settings.PARLEY_DEGRADED_TYPING_SHARE):
            self.window.add("late_ticks")


class SocketTelemetry:
    def __init__(self, counts: ProcessCounts, clock: Callable[[], float]) -> None:
        self.counts = counts
        self.clock = clock  # monotonic; the runtime's, so tests can move it
        self.acks = AckTracker(timeout=settings.PARLEY_ACK_TIMEOUT_MS / 1000)
        self.opened_at = time.monotonic()
        # Since the last tick: did an ack of this socket's frames get decided, did one time out?
        self.acks_decided = self.timed_out = False

    def wrote(self, conversation_id: int, messages: list[MessagePayload], *, path: str,
              event: Mapping[str, Any] | None = None) -> None:
        """A frame carrying ``messages`` (one conversation, ascending seq) was written."""
        if not messages:
            return
        now = time.time()
        tally = metrics.DELIVERED[path]
        for message in messages:
            tally.observe(now - _created_at(message))
        self.counts.delivered += len(messages)
        if event is not None and "published_at" in event:
            metrics.FANOUT_DISPATCH.observe(now - event["published_at"])
        if path == "replay":
            metrics.REPLAYED.inc(len(messages))
        self.acks.written(conversation_id, messages[-1]["seq"], self.clock())

    def acked(self, conversation_id: int, seq: int) -> None:
        outcome = self.acks.acked(conversation_id, seq, self.clock())
        for latency in outcome.latencies:
            metrics.CLIENT_ACK.observe(latency)
            metrics.ACK_LATENCIES.observe(latency)
        self._decided(in_time=len(outcome.latencies), timeouts=outcome.timeouts)

    def expire(self, now: float) -> None:
        """Time out the frames whose ack is overdue."""
        self._decided(in_time=0, timeouts=self.acks.expire(now))

    def take_device_outcome(self) -> tuple[bool, bool]:
        """(acks decided, one timed out) since the last call; counting starts again."""
        outcome = (self.acks_decided, self.timed_out)
        self.acks_decided = self.timed_out = False
        return outcome

    def _decided(self, *, in_time: int, timeouts: int) -> None:
        if in_time or timeouts:
            self.acks_decided = True
            self.timed_out = self.timed_out or timeouts > 0
            self.counts.acks(in_time=in_time, timeouts=timeouts)

    def helloed(self, *, resumed: bool) -> None:
        metrics.RECONNECTS.labels(outcome="resumed" if resumed else "fresh").inc()

    def closed(self) -> None:
        """The socket closed: overdue frames count as timeouts, the rest are forgotten; the
        device is counted now, since no tick will see it again."""
        self._decided(in_time=0, timeouts=self.acks.close(self.clock()))
        decided, timed_out = self.take_device_outcome()
        self.counts.device_outcomes(acking=int(decided), timing_out=int(timed_out))
