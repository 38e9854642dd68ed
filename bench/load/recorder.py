"""The recorder: every delivery attributed to the phase its message was sent in, and the one
percentile function of bench/.

A message's body carries its phase and its send time: ``<label>|<time.time() at first
send>|<pad>``, taken in this process; a delivery's latency is ``time.time()`` when the frame
carrying it is parsed minus that, on the same clock. What counts:

* a *delivery* is a message reaching one member device. With ``count_own`` (bench/load's
  issue-7 scenarios) the sender's own device counts too; without it (the issue-3 and issue-4
  scenarios) only the other members' devices do. Latency is always measured on the other
  members' devices only.
* *reordered*: a device saw a message sent before one it already had, compared per
  (device, sender) with ``order="sender"`` or over all senders with ``order="socket"``
  (issue 4's relay check); ``order=None`` skips the check (Parley's order is its seq).
* ``flag(body, what)`` counts a *duplicate* or a *seq break* reported by the client pools.
* with ``per_message`` each message's deliveries and last delivery time are kept, for "time
  until every member has it".
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def pct(values: list[float], q: float) -> float:
    """The q-quantile of sorted ``values`` by nearest rank (nan for none)."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


@dataclass
class Phase:
    """Deliveries of the messages sent in one labelled part of a scenario."""
    label: str
    offered_msgs_per_s: float = 0.0
    sent: int = 0
    confirmed: int = 0
    send_errors: Counter = field(default_factory=Counter)
    expected: int = 0          # deliveries (see the module's docstring for whose)
    delivered: int = 0
    latencies: list[float] = field(default_factory=list)     # other members' devices only
    samples: list[tuple[float, float]] = field(default_factory=list)  # (received at, latency)
    send_ok: list[float] = field(default_factory=list)        # first send to send.ok
    duplicates: int = 0
    reordered: int = 0
    seq_breaks: int = 0
    got: Counter = field(default_factory=Counter)             # per_message: send time -> deliveries
    last_at: dict[str, float] = field(default_factory=dict)   # per_message: send time -> last delivery
    first_send: float = 0.0
    last_send: float = 0.0
    last_delivery: float = 0.0
    send_lag_max: float = 0.0

    @property
    def span(self) -> float:
        """From the first send to the last delivery (a server that falls behind stretches it)."""
        return max(self.last_delivery, self.last_send) - self.first_send if self.first_send else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        span = self.span
        return {
            "phase": self.label,
            "offered_msgs_per_s": round(self.offered_msgs_per_s, 1),
            "messages": self.sent,
            "confirmed": self.confirmed,
            "send_errors": dict(self.send_errors),
            "deliveries": self.delivered,
            "expected": self.expected,
            "missing_after_drain": self.expected - self.delivered,
            "deliveries_per_s": round(self.delivered / span) if span > 0 else 0,
            "stored_msgs_per_s": round(self.sent / span, 1) if span > 0 else 0,
            "p50_ms": ms(pct(lat, 0.50)),
            "p95_ms": ms(pct(lat, 0.95)),
            "p99_ms": ms(pct(lat, 0.99)),
            "max_ms": ms(lat[-1]) if lat else float("nan"),
            "generator_lag_max_ms": ms(self.send_lag_max),
        }

    def checks(self) -> dict[str, Any]:
        """The per-phase counts of the issue-3 and issue-4 scenarios: send.ok, duplicates, order."""
        acks = sorted(self.send_ok)
        return {"send_ok_p50_ms": ms(pct(acks, 0.5)) if acks else None,
                "send_ok_p95_ms": ms(pct(acks, 0.95)) if acks else None,
                "duplicates": self.duplicates, "reordered": self.reordered, "seq_breaks": self.seq_breaks}


class Recorder:
    """Attributes each delivery to the phase its message was sent in."""

    def __init__(self, count_own: bool = True, order: str | None = "sender", per_message: bool = False) -> None:
        self.phases: dict[str, Phase] = {}
        self.t0 = time.time()
        self.unattributed = 0
        self.count_own = count_own
        self.order = order
        self.per_message = per_message
        self.last_sent: dict[Any, float] = {}

    def phase(self, label: str, rate: float = 0.0) -> Phase:
        if label not in self.phases:
            self.phases[label] = Phase(label, rate)
        return self.phases[label]

    def body(self, label: str, sent_at: float, pad: str) -> str:
        return f"{label}|{sent_at:.6f}|{pad}"

    def delivered(self, body: str, own: bool, now: float, recipient: Any = None, sender: Any = None) -> bool:
        """Count one delivery; True when it came out of order (see ``order``)."""
        try:
            label, sent, _ = body.split("|", 2)
            phase = self.phases[label]
            sent_at = float(sent)
        except (ValueError, KeyError):
            self.unattributed += 1
            return False
        reordered = False
        if self.order is not None:
            key = (recipient, sender) if self.order == "sender" else recipient
            if sent_at < self.last_sent.get(key, 0.0):
                reordered = True
                phase.reordered += 1
            else:
                self.last_sent[key] = sent_at
        if own and not self.count_own:
            return reordered
        phase.delivered += 1
        phase.last_delivery = max(phase.last_delivery, now)
        if not own:
            phase.latencies.append(now - sent_at)
            phase.samples.append((now - self.t0, now - sent_at))
        if self.per_message:
            phase.got[sent] += 1
            phase.last_at[sent] = now
        return reordered

    def flag(self, body: str, what: str) -> None:
        """A duplicate or a seq break the client saw, counted in the message's phase."""
        phase = self.phases.get(body.split("|", 1)[0])
        if phase is not None:
            setattr(phase, what, getattr(phase, what) + 1)

    def confirmed(self, cmid: str, sent_at: float, now: float) -> None:
        phase = self.phases.get(cmid.split(":", 1)[0])
        if phase is not None:
            phase.confirmed += 1
            phase.send_ok.append(now - sent_at)

    def send_error(self, cmid: str, code: str | None) -> None:
        phase = self.phases.get(cmid.split(":", 1)[0])
        if phase is not None:
            phase.send_errors[code] += 1

    def all_members(self, phase: Phase, recipients: int) -> list[float]:
        """Per message that reached every recipient: seconds until the last one had it (sorted)."""
        return sorted(phase.last_at[s] - float(s) for s, n in phase.got.items() if n >= recipients)
