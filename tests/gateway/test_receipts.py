"""Receipt frames coalesced once per gateway process (gateway/receipts.py), on a clock the test moves."""
from __future__ import annotations

import json

import pytest

from gateway.notices import ReceiptBatch, ReceiptText
from gateway.receipts import ReceiptCoalescer
from tests.clock import ManualClock


class FakeSocket:
    def __init__(self, device_key: str = "") -> None:
        self.device_key = device_key
        self.frames: list[ReceiptText | ReceiptBatch] = []

    def deliver(self, notice: ReceiptText | ReceiptBatch) -> None:
        self.frames.append(notice)

    def written(self, *, batched: bool = False) -> list[dict]:
        """The frames this socket would write: a ``receipt`` per user, or with ``batched`` (its
        hello asked for batches) one ``receipts`` frame per flush."""
        texts = [t for n in self.frames
                 for t in (n.frames(batched=batched) if isinstance(n, ReceiptBatch) else (n.text,))]
        return [json.loads(text) for text in texts]


def receipts(conversation: int, *marks: tuple[int, int, int, list[str]], own_only: bool = False) -> dict:
    return {"type": "conv.receipts", "conversation": conversation, "own_only": own_only,
            "receipts": [{"user": u, "delivered_seq": d, "read_seq": r, "devices": devices}
                         for u, d, r, devices in marks]}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def process(settings, clock):
    settings.PARLEY_RECEIPT_COALESCE_MS = 50
    routes = {"conv.7": {FakeSocket(), FakeSocket(), FakeSocket()},
              "user.2": {FakeSocket("phone"), FakeSocket("laptop")}}
    return ReceiptCoalescer(lambda group: routes.get(group, ()), call_later=clock.call_later, clock=clock), routes


def test_crossing_events_become_one_frame_per_socket_with_the_highest_marks(process, clock):
    coalescer, routes = process
    coalescer.add(receipts(7, (2, 5, 1, [])))
    coalescer.add(receipts(7, (2, 4, 3, [])))  # an older delivered mark crossing a newer read
    clock.advance(0)
    assert [socket.written() for socket in routes["conv.7"]] == 3 * [
        [{"type": "receipt", "conversation": 7, "user": 2, "delivered_seq": 5, "read_seq": 3}]]
    # serialized once: every socket got the very same string
    assert len({id(socket.frames[0].texts[0]) for socket in routes["conv.7"]}) == 1


def test_a_later_advance_waits_out_the_window_of_the_last_frame(process, clock):
    coalescer, routes = process
    coalescer.add(receipts(7, (2, 1, 0, [])))
    clock.advance(0.01)
    assert all(len(s.written()) == 1 for s in routes["conv.7"])  # the first goes out at once
    coalescer.add(receipts(7, (2, 2, 0, [])))
    clock.advance(0.039)
    assert all(len(s.written()) == 1 for s in routes["conv.7"])  # inside the window: held
    clock.advance(0.002)
    assert all(s.written()[-1]["delivered_seq"] == 2 for s in routes["conv.7"])
    assert all(len(s.written()) == 2 for s in routes["conv.7"])


def test_in_large_conversations_only_the_users_own_sockets_get_it_minus_the_acking_device(process, clock):
    coalescer, routes = process
    coalescer.add(receipts(7, (2, 9, 0, ["phone"]), own_only=True))
    clock.advance(0)
    assert all(s.frames == [] for s in routes["conv.7"])
    frames = [s.frames[0] for s in routes["user.2"]]
    assert all(f.own_user == 2 and f.except_devices == {"phone"} for f in frames)


def test_a_large_conversations_mark_makes_no_frame_where_only_the_acking_devices_are(process, clock):
    """An ack flush names every member whose mark moved; a process that holds none of the
    user's other devices schedules nothing for it."""
    coalescer, routes = process
    coalescer.add(receipts(7, (2, 9, 0, ["phone", "laptop"]), (3, 9, 0, ["tablet"]), own_only=True))
    assert coalescer.pending == {}
    clock.advance(1)
    assert all(s.frames == [] for group in routes.values() for s in group)
    coalescer.add(receipts(7, (2, 10, 0, ["phone"]), own_only=True))  # the laptop did not ack this one
    clock.advance(1)
    assert {s.device_key: len(s.frames) for s in routes["user.2"]} == {"phone": 1, "laptop": 1}
    assert all(f.except_devices == {"phone"} for s in routes["user.2"] for f in s.frames)


def test_a_deferred_receipt_is_released_with_the_latest_marks(process, clock, monkeypatch):
    from ops import degraded

    coalescer, routes = process
    monkeypatch.setattr(degraded, "sheds", lambda kind: kind == degraded.RECEIPTS)
    coalescer.add(receipts(7, (2, 1, 1, [])))
    coalescer.add(receipts(7, (2, 3, 2, [])))
    clock.advance(1.0)
    assert all(s.frames == [] for s in routes["conv.7"])
    monkeypatch.setattr(degraded, "sheds", lambda kind: False)
    coalescer.release()
    assert [s.written()[0]["read_seq"] for s in routes["conv.7"]] == [2, 2, 2]


def test_one_window_of_many_members_marks_is_one_receipts_frame_for_a_batching_socket(process, clock):
    coalescer, routes = process
    coalescer.add(receipts(7, (2, 5, 1, [])))
    coalescer.add(receipts(7, (3, 5, 0, []), (4, 4, 4, [])))
    clock.advance(0)
    coalescer.add(receipts(7, (3, 6, 6, [])))  # inside the window: the next flush, with the latest
    clock.advance(0.05)
    socket = next(iter(routes["conv.7"]))
    assert socket.written(batched=True) == [
        {"type": "receipts", "conversation": 7, "receipts": [
            {"user": 2, "delivered_seq": 5, "read_seq": 1}, {"user": 3, "delivered_seq": 5, "read_seq": 0},
            {"user": 4, "delivered_seq": 4, "read_seq": 4}]},
        {"type": "receipts", "conversation": 7, "receipts": [{"user": 3, "delivered_seq": 6, "read_seq": 6}]},
    ]
    # the same flushes, for a socket that did not ask: a receipt per user, the same marks
    assert [(f["user"], f["delivered_seq"], f["read_seq"]) for f in socket.written()] == [
        (2, 5, 1), (3, 5, 0), (4, 4, 4), (3, 6, 6)]


def test_a_conversation_flushes_at_most_once_per_window_whoever_advanced(process, clock):
    coalescer, routes = process
    for user in range(2, 12):
        coalescer.add(receipts(7, (user, 1, 0, [])))
        clock.advance(0.004)  # ten members' acks spread over 40 ms: inside one window
    clock.advance(0.05)
    # the first at once (the conversation was idle), the other nine together at the window's end
    assert all([len(n.texts) for n in s.frames] == [1, 9] for s in routes["conv.7"])
