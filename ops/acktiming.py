"""Which message frames of one connection still wait for an ack, and since when.

An ack is expected within ``PARLEY_ACK_TIMEOUT_MS`` of the frame being written. Acks are
cumulative (CONTRACT: ``ack`` N means the device has everything <= N), so one ack answers
every frame of that conversation up to N; a frame is remembered by the highest seq it
carried. Each frame ends exactly once, as one of:

* in time: an ack covering it arrived within the timeout (its latency is observed);
* timed out: the timeout passed first (an ack arriving later changes nothing), or the
  connection closed while it was overdue. A frame still within its timeout when the
  connection closes is not counted either way.

Pure bookkeeping, no I/O; the caller passes the clock.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AckOutcome:
    latencies: list[float]  # seconds from written to acked, one per frame answered in time
    timeouts: int


@dataclass
class AckTracker:
    timeout: float  # seconds
    # Per conversation, frames in the order written: (highest seq carried, written at).
    _pending: dict[int, deque[tuple[int, float]]] = field(default_factory=dict)

    def written(self, conversation_id: int, seq: int, at: float) -> None:
        self._pending.setdefault(conversation_id, deque()).append((seq, at))

    def acked(self, conversation_id: int, seq: int, at: float) -> AckOutcome:
        frames = self._pending.get(conversation_id)
        latencies: list[float] = []
        timeouts = 0
        while frames and frames[0][0] <= seq:
            _, written_at = frames.popleft()
            if at - written_at <= self.timeout:
                latencies.append(at - written_at)
            else:
                timeouts += 1
        if frames is not None and not frames:
            del self._pending[conversation_id]
        return AckOutcome(latencies, timeouts)

    def expire(self, now: float) -> int:
        """Count and forget the frames whose timeout has passed."""
        timeouts = 0
        for conversation_id in list(self._pending):
            frames = self._pending[conversation_id]
            while frames and now - frames[0][1] > self.timeout:
                frames.popleft()
                timeouts += 1
            if not frames:
                del self._pending[conversation_id]
        return timeouts

    def close(self, now: float) -> int:
        """The connection closed: overdue frames time out, the rest are forgotten."""
        timeouts = self.expire(now)
        self._pending.clear()
        return timeouts

    def waiting(self) -> int:
        return sum(len(frames) for frames in self._pending.values())
