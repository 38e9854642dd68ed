"""Ack timing: every message frame ends once, in time or timed out, whatever the acks do."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ops.acktiming import AckTracker


def test_one_cumulative_ack_answers_every_frame_up_to_its_seq():
    tracker = AckTracker(timeout=2.0)
    for seq, at in ((1, 0.0), (2, 0.1), (3, 0.2)):
        tracker.written(7, seq, at)
    outcome = tracker.acked(7, 2, at=0.5)
    assert outcome.latencies == [0.5, 0.4] and outcome.timeouts == 0
    assert tracker.waiting() == 1


def test_an_ack_after_the_timeout_does_not_count_as_in_time():
    tracker = AckTracker(timeout=2.0)
    tracker.written(7, 1, 0.0)
    assert tracker.expire(now=1.0) == 0
    assert tracker.expire(now=2.5) == 1
    assert tracker.acked(7, 1, at=3.0).latencies == []  # already counted as a timeout


def test_a_closed_connection_times_out_only_what_was_overdue():
    tracker = AckTracker(timeout=2.0)
    tracker.written(7, 1, 0.0)
    tracker.written(8, 5, 4.0)
    assert tracker.close(now=5.0) == 1 and tracker.waiting() == 0


@given(st.lists(st.tuples(st.sampled_from(["write", "ack", "tick"]), st.integers(1, 3), st.floats(0, 1))))
def test_every_frame_ends_exactly_once(steps):
    tracker, now, written, ended = AckTracker(timeout=1.0), 0.0, 0, 0
    last_seq = {1: 0, 2: 0, 3: 0}
    for action, conversation, pause in steps:
        now += pause
        if action == "write":
            last_seq[conversation] += 1
            tracker.written(conversation, last_seq[conversation], now)
            written += 1
        elif action == "ack":
            outcome = tracker.acked(conversation, last_seq[conversation], now)
            ended += len(outcome.latencies) + outcome.timeouts
            assert all(latency <= 1.0 for latency in outcome.latencies)
        else:
            ended += tracker.expire(now)
    ended += tracker.expire(now + 2)
    assert ended == written and tracker.waiting() == 0
