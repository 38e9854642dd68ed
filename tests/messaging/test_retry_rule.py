"""The 4429 rule (messaging.ratelimit.RetryRule): a client that waits each retry_after_ms it was
given is never abusive, however many sends it keeps in flight; one that comes back early is.

Driven by a clock the test moves. The simulation below puts a connection's limits (its frame
rate, and the user's send rate, counted here in memory with the same sliding window as the
shared counter) in front of clients that keep N sends in flight.
"""
from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from messaging.ratelimit import ConnectionLimit, Rate, RetryRule

LONG = Rate(1_000_000, 1)  # a hard cap that never bites, for the tests about telling


class Clock:
    def __init__(self, at: float = 1_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def rule(hard_cap: Rate = LONG) -> tuple[RetryRule, Clock]:
    clock = Clock()
    return RetryRule(hard_cap, clock=clock), clock


def test_a_frame_back_when_it_was_told_is_no_abuse_even_when_refused_again():
    retries, clock = rule()
    told = retries.refused("k", 200, limit="send", interval=0.1)
    clock.at += told / 1000
    assert retries.arrived("k") == 0
    assert retries.refused("k", 100, limit="send", interval=0.1) > 0  # its neighbours took the room
    clock.at += 0.5
    assert retries.arrived("k") == 0


def test_a_frame_back_before_its_time_is_abuse_and_told_what_remains():
    retries, clock = rule()
    retries.refused("k", 1000, limit="send", interval=0.1)
    clock.at += 0.4
    assert retries.arrived("k") == pytest.approx(600, abs=1)
    clock.at += 0.6 - RetryRule.TOLERANCE / 2  # timers wake a little early: within the tolerance is on time
    assert retries.arrived("k") == 0


def test_other_keys_are_not_held_back_by_one_that_waits():
    """A client with several sends in flight sends new ones while a refused one waits its turn."""
    retries, _ = rule()
    retries.refused(("send", "a"), 1000, limit="send", interval=0.1)
    assert retries.arrived(("send", "b")) == 0
    assert retries.arrived(("Ping", None)) == 0


def test_a_key_let_through_starts_afresh():
    retries, clock = rule()
    retries.refused("k", 1000, limit="frames", interval=0.02)
    clock.at += 1
    retries.admitted("k")
    clock.at -= 0.5  # were it still remembered, this would be early
    assert retries.arrived("k") == 0


def test_refused_frames_are_told_successive_turns_of_their_limit():
    retries, clock = rule()
    told = [retries.refused(("send", i), 50, limit="send", interval=0.1) for i in range(4)]
    assert told == pytest.approx([50, 150, 250, 350], abs=1)  # whole ms, rounded up
    assert retries.refused("ping", 10, limit="frames", interval=0.02) == 10  # another limit, its own turns
    clock.at += 1.0  # the queue has gone by: the next refusal waits only what its limit says
    assert retries.refused(("send", 9), 50, limit="send", interval=0.1) == 50


def test_frames_past_the_hard_cap_are_abuse_whatever_their_key():
    retries, _ = rule(hard_cap=Rate(3, 1))
    assert [retries.arrived(("send", i)) for i in range(5)][:3] == [0, 0, 0]
    assert retries.arrived(("send", 99)) > 0


def test_the_keys_remembered_are_bounded_and_the_oldest_go_first():
    clock = Clock()
    retries = RetryRule(LONG, clock=clock, max_keys=3)
    for key in "abcd":
        retries.refused(key, 60_000, limit="send", interval=0.001)
    assert retries.arrived("a") == 0  # forgotten: the oldest of four, with room for three
    assert retries.arrived("b") > 0 and retries.arrived("d") > 0


# --- clients against a connection's limits ---------------------------------------------------------

@dataclass
class Outcome:
    stored: int = 0
    abusive: int = 0  # frames the rule judged abuse
    frames: int = 0
    busiest_second: int = 0  # the most frames that arrived within one second


@dataclass
class Connection:
    """The gateway's order for a send frame: the rule, the frame rate, then the user's send rate."""

    clock: Clock
    frames: Rate
    sends: Rate
    hard_cap: Rate
    retries: RetryRule = field(init=False)

    def __post_init__(self) -> None:
        self.retries = RetryRule(self.hard_cap, clock=self.clock)
        self.frame_limit = ConnectionLimit(self.frames, clock=self.clock)
        self.send_limit = ConnectionLimit(self.sends, clock=self.clock)

    def send(self, key: str) -> tuple[str, int]:
        """``("ok", 0)``, ``("refused", retry_after_ms)`` or ``("abuse", retry_after_ms)``."""
        early = self.retries.arrived(key)
        if early:
            return "abuse", early
        for name, limit in (("frames", self.frame_limit), ("send", self.send_limit)):
            wait = limit.hit()
            if wait:
                rate = limit.rate
                return "refused", self.retries.refused(key, wait, limit=name, interval=rate.seconds / rate.count)
            if name == "frames":
                self.retries.admitted(key)
        return "ok", 0


def simulate(*, in_flight: int, messages: int, frames: Rate, sends: Rate, hard_cap: Rate,
             delay: Callable[[], float], honours_retry_after: bool = True, max_frames: int = 20_000) -> Outcome:
    """``in_flight`` workers each send a message, and on a refusal wait its retry_after_ms (or
    not) and send it again; each frame and each answer takes ``delay()`` seconds on the way."""
    clock = Clock()
    connection = Connection(clock, frames, sends, hard_cap)
    outcome = Outcome()
    arrivals: list[float] = []
    timers: list[tuple[float, int, Callable[[], None]]] = []
    order = itertools.count()
    keys = (f"m{i}" for i in range(messages))

    def later(seconds: float, then: Callable[[], None]) -> None:
        heapq.heappush(timers, (clock.at + seconds, next(order), then))

    def send(key: str) -> None:
        later(delay(), lambda: arrive(key))

    def arrive(key: str) -> None:
        arrivals.append(clock.at)
        verdict, wait_ms = connection.send(key)
        outcome.abusive += verdict == "abuse"
        later(delay(), lambda: answered(key, verdict, wait_ms))

    def answered(key: str, verdict: str, wait_ms: int) -> None:
        if verdict == "ok":
            outcome.stored += 1
            start()
        else:
            later(wait_ms / 1000 if honours_retry_after else 0.0, lambda: send(key))

    def start() -> None:
        key = next(keys, None)
        if key is not None:
            send(key)

    for _ in range(in_flight):
        start()
    while timers and len(arrivals) < max_frames:
        at, _, then = heapq.heappop(timers)
        clock.at = max(clock.at, at)
        then()
    outcome.frames = len(arrivals)
    first = 0
    for last, at in enumerate(arrivals):
        while arrivals[first] < at - 1:
            first += 1
        outcome.busiest_second = max(outcome.busiest_second, last - first + 1)
    return outcome


@hypothesis_settings(max_examples=40, deadline=None)
@given(in_flight=st.integers(1, 64), send_rate=st.sampled_from(["5/s", "30/s", "100/m"]),
       frame_rate=st.sampled_from(["50/s", "20/s"]), seed=st.integers(0, 2**32 - 1),
       max_delay_ms=st.integers(0, 50))
def test_a_client_that_waits_each_retry_after_is_never_abusive_however_many_sends_it_keeps_in_flight(
        in_flight, send_rate, frame_rate, seed, max_delay_ms):
    rng = random.Random(seed)
    frames = Rate.parse(frame_rate)
    outcome = simulate(in_flight=in_flight, messages=150, frames=frames, sends=Rate.parse(send_rate),
                       hard_cap=Rate.parse("500/s"), delay=lambda: rng.uniform(0, max_delay_ms / 1000))
    assert outcome.abusive == 0
    assert outcome.stored == 150
    # Told turns, its frames stay near the frame rate, whatever it keeps in flight (beyond the
    # first burst of new sends): far under the hard cap.
    assert outcome.busiest_second <= in_flight + 3 * frames.count / frames.seconds


def test_a_client_that_ignores_retry_after_is_judged_abusive_at_once():
    outcome = simulate(in_flight=8, messages=150, frames=Rate.parse("50/s"), sends=Rate.parse("30/s"),
                       hard_cap=Rate.parse("500/s"), delay=lambda: 0.001, honours_retry_after=False,
                       max_frames=300)
    assert outcome.abusive > 100
