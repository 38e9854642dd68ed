"""What one connection measures, and what its process sums for degraded mode (docs/operations.md).

Cheap: in-memory tallies, no I/O. Each socket notes the frames it wrote (send-to-deliver per
path, fan-out dispatch) and the acks that answered them (ops.acktiming); the process's
:class:`Window` collects acks, timeouts, disconnects and late ticks until the runtime's tick
adds them to the shared degraded-mode window.
"""
from __future__ import annotations

import time
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Mapping

from django.conf import settings

from messaging.payloads import MessagePayload
from ops import degraded, metrics
from ops.acktiming import AckTracker


def _created_at(message: MessagePayload) -> float:
    return _timestamp(message["created_at"])


@lru_cache(maxsize=4096)
def _timestamp(created_at: str) -> float:
    """Parsed once per process, not once per socket the message reaches."""
    return datetime.fromisoformat(created_at).timestamp()


class ProcessCounts:
    """The process's share of degraded mode's signals since the last tick."""

    def __init__(self) -> None:
        self.window = degraded.Window()
        self.delivered = 0  # messages written to sockets, ever (the CPU-per-delivery gauge)

    def acks(self, *, in_time: int, timeouts: int) -> None:
        if in_time:
            metrics.ACKS_IN_TIME.inc(in_time)
            self.window.add("acks_in_time", in_time)
        if timeouts:
            metrics.ACK_TIMEOUTS.inc(timeouts)
            self.window.add("ack_timeouts", timeouts)

    def disconnect(self) -> None:
        metrics.DISCONNECTS.inc()
        self.window.add("disconnects")

    def tick(self, lag: float) -> None:
        """One tick, lagging ``lag`` seconds (the gateway-lag signal)."""
        metrics.GATEWAY_LAG.observe(max(lag, 0.0))
        self.window.add("ticks")
        if lag * 1000 > settings.PARLEY_DEGRADED_GATEWAY_LAG_MS:
            self.window.add("late_ticks")


class SocketTelemetry:
    def __init__(self, counts: ProcessCounts, clock: Callable[[], float]) -> None:
        self.counts = counts
        self.clock = clock  # monotonic; the runtime's, so tests can move it
        self.acks = AckTracker(timeout=settings.PARLEY_ACK_TIMEOUT_MS / 1000)
        self.opened_at = time.monotonic()

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
        self.counts.acks(in_time=len(outcome.latencies), timeouts=outcome.timeouts)

    def helloed(self, *, resumed: bool) -> None:
        metrics.RECONNECTS.labels(outcome="resumed" if resumed else "fresh").inc()

    def closed(self) -> None:
        """The socket closed: overdue frames count as timeouts, the rest are forgotten."""
        self.counts.acks(in_time=0, timeouts=self.acks.close(self.clock()))
