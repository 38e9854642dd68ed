"""The per-connection stream state machine: whatever order and loss the live path has,
what a connection sends is strictly increasing and gap-free from its resume point."""
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway.stream import Action, ConnectionStreams


def run(streams: ConnectionStreams, conversation_id: int, arrivals: list[int], store_last: int) -> list[int]:
    """Play live events; fills read the 'store' (seqs 1..store_last). Returns what was sent."""
    sent: list[int] = []
    for seq in arrivals:
        decision = streams.on_live(conversation_id, seq)
        if decision.action is Action.SEND:
            sent += streams.sent_run(conversation_id, [seq])
        elif decision.action is Action.FILL:
            run_ = list(range(decision.after_seq + 1, min(decision.upto_seq, store_last) + 1))
            sent += streams.sent_run(conversation_id, run_)
    return sent


def test_the_next_seq_is_sent_as_is():
    streams = ConnectionStreams()
    streams.follow(7, held=3)
    assert streams.on_live(7, 4).action is Action.SEND


def test_a_skipped_seq_asks_for_a_fill_from_the_store():
    streams = ConnectionStreams()
    streams.follow(7, held=3)
    decision = streams.on_live(7, 6)
    assert (decision.action, decision.after_seq, decision.upto_seq) == (Action.FILL, 3, 6)


def test_what_the_client_holds_is_never_sent_again():
    streams = ConnectionStreams()
    streams.follow(7, held=3)
    assert streams.on_live(7, 2).action is Action.DROP
    assert streams.sent_run(7, [1, 2, 3, 4]) == [4]


def test_a_run_that_would_open_a_gap_is_not_sent():
    streams = ConnectionStreams()
    streams.follow(7, held=3)
    assert streams.sent_run(7, [5, 6]) == []
    assert streams.held(7) == 3


def test_events_for_unfollowed_conversations_are_dropped():
    streams = ConnectionStreams()
    assert streams.on_live(99, 1).action is Action.DROP


def test_a_connection_behind_defers_live_events_and_owes_a_fill_when_it_catches_up():
    streams = ConnectionStreams()
    streams.follow(7, held=0, behind=True)
    assert streams.on_live(7, 250).action is Action.DEFER
    streams.sent_run(7, list(range(1, 201)))
    streams.page_done(7, has_more=False)
    owed = streams.owed(7)
    assert (owed.action, owed.after_seq, owed.upto_seq) == (Action.FILL, 200, 250)


def test_a_replay_request_moves_the_resume_point_forward_only():
    streams = ConnectionStreams()
    streams.follow(7, held=10)
    streams.client_holds(7, 5)
    assert streams.held(7) == 10
    streams.client_holds(7, 20)
    assert streams.held(7) == 20


@hsettings(max_examples=300, deadline=None)
@given(
    resume=st.integers(min_value=0, max_value=20),
    extra=st.integers(min_value=1, max_value=40),
    data=st.data(),
)
def test_any_order_and_loss_of_live_events_yields_a_strictly_increasing_gap_free_stream(resume, extra, data):
    last = resume + extra
    seqs = list(range(resume + 1, last + 1))
    # Lose some events (but never all: the tail check always re-announces the last one),
    # duplicate some, and shuffle them.
    kept = data.draw(st.lists(st.sampled_from(seqs), min_size=0, max_size=len(seqs) * 2))
    arrivals = data.draw(st.permutations(kept + [last]))
    streams = ConnectionStreams()
    streams.follow(1, held=resume)
    sent = run(streams, 1, arrivals, store_last=last)
    assert sent == seqs
