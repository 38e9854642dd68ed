"""When degraded mode sheds: its levels, the signals it weighs, and the hysteresis that turns
them into a level. Pure: no cache, no clock of its own, no settings read outside
:meth:`Thresholds.from_settings`; ops.degraded shares the window and stores the decision.

Signals, shared through the cache by every gateway process, per second (ops.degraded). Two kinds:

*Server-side lag* says the servers are behind, and is enough on its own:

* gateway lag: a gateway tick (one a second per process) is *late* when its lag was over
  ``PARLEY_DEGRADED_GATEWAY_LAG_MS``. A tick's lag is the longest of: how late its event
  loop woke it, how old the oldest message event a socket handled since the last tick was
  (publish to handling, so the sockets' own queues count), how long a call waited for a
  database thread, how long clients' frames waited in their sockets' inbound queues to
  be handled (gateway.telemetry: many sockets, not one client's own burst), and how long the
  oldest event still waiting for the process in the channel layer has waited there (a
  flood that outruns the hub's receive piles up in Redis, where nothing else sees it).
  A tick is late at the lower ``PARLEY_DEGRADED_TYPING_LAG_MS`` too while typing was at
  least ``PARLEY_DEGRADED_TYPING_SHARE`` of the frames and events the process's sockets
  handled since the last tick (gateway.telemetry): what is shed first is most of the work and
  the rest already waits for it, so shedding helps before the backlog grows.
  Hot when, over the last ``PARLEY_DEGRADED_LAG_WINDOW_SECONDS`` (the second in progress included), at
  least ``PARLEY_DEGRADED_MIN_LATE_TICKS`` ticks were late and they were more than
  ``PARLEY_DEGRADED_LATE_TICK_RATIO`` of the ticks: a flood (typing, say) queues ahead of
  messages on the loop, in the layer's channel, in the thread pool or in the inbound queues,
  and two late ticks say so within about two seconds, one stall (a pause of the collector)
  does not;
* queue lag: the age of the oldest waiting task in the queues ``PARLEY_DEGRADED_QUEUES``
  (ops.queues, read from the broker).

*What clients show* is weighed **by device**, and sheds only when server-side lag
corroborates it (a slow phone, or a whole office on a bad link, is not the server's
overload, and shedding typing for everyone would not help them):

* ack timeouts: the share of devices that had a message frame's ack time out
  (``PARLEY_ACK_TIMEOUT_MS``), among the devices that had acks decided, counted per tick
  and summed over ``PARLEY_DEGRADED_WINDOW_SECONDS``, once there were on average at least
  ``PARLEY_DEGRADED_MIN_DEVICES``. One device that stops acking among eight is one eighth
  of the devices however many messages it leaves unacked (the ratio of messages made it
  most of them, and put everyone in degraded mode);
* a disconnect spike: disconnects over the average open connections, once there were at
  least ``PARLEY_DEGRADED_DISCONNECT_MIN`` disconnects;
* *corroborated* means: at least ``PARLEY_DEGRADED_CORROBORATING_TICK_RATIO`` of the
  window's ticks lagged more than ``PARLEY_DEGRADED_CORROBORATING_LAG_MS`` (lower than a
  late tick's), or the queue lag is over its exit threshold.

Hysteresis (:class:`Hysteresis`). *Hot*: any signal above its enter threshold. *Calm*:
every signal below its exit threshold, which is lower (the gateway lag's exit is judged
over the whole window; a client signal that nothing corroborates counts as calm). Hot at
level 0 enters level 1 at once; hot for ``PARLEY_DEGRADED_ESCALATE_SECONDS`` more climbs
one level. Calm for ``PARLEY_DEGRADED_CALM_SECONDS`` drops one level, and the next drop
needs another calm period. Between the bounds nothing moves and both timers restart. A
signal hovering at a threshold therefore cannot make the mode flap.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from django.conf import settings

# What each level sheds (ops.degraded: what shedding each one means).
TYPING, PRESENCE, RECEIPTS = "typing", "presence", "receipts"
SHED_BY_LEVEL: tuple[tuple[str, ...], ...] = ((), (TYPING, PRESENCE), (TYPING, PRESENCE, RECEIPTS))
MAX_LEVEL = len(SHED_BY_LEVEL) - 1


@dataclass(frozen=True)
class Signals:
    """What the window holds (sums over ``PARLEY_DEGRADED_WINDOW_SECONDS``, unless said)."""

    acks_in_time: int = 0         # message frames: for the ack-timeout ratio metric, not a signal
    ack_timeouts: int = 0
    acking_devices: int = 0       # device-ticks: a socket with acks decided since its gateway's last tick
    timing_out_devices: int = 0   # of those, the ones with at least one ack timeout
    devices: float = 0.0          # devices with acks decided, averaged over the window
    disconnects: int = 0
    connections: float = 0.0      # open sockets, averaged over the window
    ticks: int = 0                # gateway ticks, all gateways
    slow_ticks: int = 0           # lagging over PARLEY_DEGRADED_CORROBORATING_LAG_MS
    late_ticks: int = 0           # lagging over PARLEY_DEGRADED_GATEWAY_LAG_MS
    recent_ticks: int = 0         # ticks in the last PARLEY_DEGRADED_LAG_WINDOW_SECONDS
    recent_late_ticks: int = 0
    queue_lag: float = 0.0        # seconds, the worst of PARLEY_DEGRADED_QUEUES

    @property
    def ack_timeout_ratio(self) -> float:
        acks = self.acks_in_time + self.ack_timeouts
        return self.ack_timeouts / acks if acks else 0.0

    @property
    def device_timeout_share(self) -> float:
        return self.timing_out_devices / self.acking_devices if self.acking_devices else 0.0

    @property
    def disconnect_ratio(self) -> float:
        return self.disconnects / max(self.connections, 1.0)

    @property
    def late_tick_ratio(self) -> float:
        return self.late_ticks / self.ticks if self.ticks else 0.0

    @property
    def recent_late_tick_ratio(self) -> float:
        return self.recent_late_ticks / self.recent_ticks if self.recent_ticks else 0.0

    @property
    def slow_tick_ratio(self) -> float:
        return self.slow_ticks / self.ticks if self.ticks else 0.0


@dataclass(frozen=True)
class Thresholds:
    device_timeout_share: float
    device_timeout_share_exit: float
    min_devices: float
    queue_lag: float
    queue_lag_exit: float
    disconnect_ratio: float
    disconnect_ratio_exit: float
    min_disconnects: int
    late_tick_ratio: float
    late_tick_ratio_exit: float
    min_late_ticks: int
    corroborating_tick_ratio: float
    escalate_after: float
    calm_for: float

    @classmethod
    def from_settings(cls) -> "Thresholds":
        return cls(
            device_timeout_share=settings.PARLEY_DEGRADED_DEVICE_TIMEOUT_SHARE,
            device_timeout_share_exit=settings.PARLEY_DEGRADED_DEVICE_TIMEOUT_SHARE_EXIT,
            min_devices=settings.PARLEY_DEGRADED_MIN_DEVICES,
            queue_lag=settings.PARLEY_DEGRADED_QUEUE_LAG_SECONDS,
            queue_lag_exit=settings.PARLEY_DEGRADED_QUEUE_LAG_EXIT_SECONDS,
            disconnect_ratio=settings.PARLEY_DEGRADED_DISCONNECT_RATIO,
            disconnect_ratio_exit=settings.PARLEY_DEGRADED_DISCONNECT_RATIO_EXIT,
            min_disconnects=settings.PARLEY_DEGRADED_DISCONNECT_MIN,
            late_tick_ratio=settings.PARLEY_DEGRADED_LATE_TICK_RATIO,
            late_tick_ratio_exit=settings.PARLEY_DEGRADED_LATE_TICK_RATIO_EXIT,
            min_late_ticks=settings.PARLEY_DEGRADED_MIN_LATE_TICKS,
            corroborating_tick_ratio=settings.PARLEY_DEGRADED_CORROBORATING_TICK_RATIO,
            escalate_after=settings.PARLEY_DEGRADED_ESCALATE_SECONDS,
            calm_for=settings.PARLEY_DEGRADED_CALM_SECONDS,
        )

    def corroborated(self, signals: Signals) -> bool:
        """Do the servers lag enough to take what clients show as overload?"""
        return (signals.queue_lag > self.queue_lag_exit
                or (signals.ticks > 0 and signals.slow_tick_ratio >= self.corroborating_tick_ratio))

    def _devices_time_out(self, signals: Signals, share: float) -> bool:
        return signals.devices >= self.min_devices and signals.device_timeout_share > share

    def _disconnect_spike(self, signals: Signals, ratio: float) -> bool:
        return signals.disconnects >= self.min_disconnects and signals.disconnect_ratio > ratio

    def hot(self, signals: Signals) -> tuple[str, ...]:
        """The signals above their enter thresholds (the client-side ones only if corroborated)."""
        reasons = []
        if (signals.recent_late_ticks >= self.min_late_ticks
                and signals.recent_late_tick_ratio > self.late_tick_ratio):
            reasons.append("gateway_lag")
        if signals.queue_lag > self.queue_lag:
            reasons.append("queue_lag")
        if self.corroborated(signals):
            if self._devices_time_out(signals, self.device_timeout_share):
                reasons.append("ack_timeouts")
            if self._disconnect_spike(signals, self.disconnect_ratio):
                reasons.append("disconnects")
        return tuple(reasons)

    def calm(self, signals: Signals) -> bool:
        """Every signal below its exit threshold (too few samples, or nothing corroborating a
        client-side signal, counts as below)."""
        corroborated = self.corroborated(signals)
        return (
            signals.late_tick_ratio < self.late_tick_ratio_exit
            and signals.queue_lag < self.queue_lag_exit
            and not (corroborated and self._devices_time_out(signals, self.device_timeout_share_exit))
            and not (corroborated and self._disconnect_spike(signals, self.disconnect_ratio_exit))
        )


@dataclass(frozen=True)
class State:
    level: int = 0
    since: float = 0.0               # when the level last changed
    hot_since: float | None = None   # hot without a break since then
    calm_since: float | None = None  # calm without a break since then (or since the last drop)
    reasons: tuple[str, ...] = ()    # what is hot now


class Hysteresis:
    """The automatic level: the state machine above, with the clock it judges time by injected.

    Plain and in memory; ops.degraded.evaluate builds one from the shared state, shows it the
    signals and stores what it became. Tests drive it with a clock they move.
    """

    def __init__(self, thresholds: Thresholds, *, clock: Callable[[], float], state: State | None = None) -> None:
        self.thresholds = thresholds
        self.clock = clock
        self.state = state or State()

    @property
    def level(self) -> int:
        return self.state.level

    def observe(self, signals: Signals) -> State:
        """One more look at the signals; the state after it."""
        now, state, thresholds = self.clock(), self.state, self.thresholds
        reasons = thresholds.hot(signals)
        if reasons:
            if state.level == 0:
                state = State(level=1, since=now, hot_since=now, reasons=reasons)
            else:
                hot_since = state.hot_since if state.hot_since is not None else now
                if state.level < MAX_LEVEL and now - hot_since >= thresholds.escalate_after:
                    state = State(level=state.level + 1, since=now, hot_since=now, reasons=reasons)
                else:
                    state = replace(state, hot_since=hot_since, calm_since=None, reasons=reasons)
        elif thresholds.calm(signals) and state.level > 0:
            calm_since = state.calm_since if state.calm_since is not None else now
            if now - calm_since >= thresholds.calm_for:
                level = state.level - 1
                state = State(level=level, since=now, calm_since=now if level else None)
            else:
                state = replace(state, hot_since=None, calm_since=calm_since, reasons=())
        else:
            state = replace(state, hot_since=None, calm_since=None, reasons=())
        self.state = state
        return state
