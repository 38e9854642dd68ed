"""Receipt frames coalesced once per gateway process (messaging/gateway/receipts.py)."""
from __future__ import annotations

import asyncio
import json

import pytest

from messaging.gateway.receipts import ReceiptCoalescer


class FakeSocket:
    def __init__(self) -> None:
        self.frames: list[dict] = []

    def deliver(self, event: dict) -> None:
        self.frames.append(event)


def receipts(conversation: int, *marks: tuple[int, int, int, list[str]], own_only: bool = False) -> dict:
    return {"type": "conv.receipts", "conversation": conversation, "own_only": own_only,
            "receipts": [{"user": u, "delivered_seq": d, "read_seq": r, "devices": devices}
                         for u, d, r, devices in marks]}


@pytest.fixture
def process(settings):
    settings.PARLEY_RECEIPT_COALESCE_MS = 50
    routes = {"conv.7": {FakeSocket(), FakeSocket(), FakeSocket()}, "user.2": {FakeSocket(), FakeSocket()}}
    return ReceiptCoalescer(lambda group: routes.get(group, ())), routes


async def test_crossing_events_become_one_frame_per_socket_with_the_highest_marks(process):
    coalescer, routes = process
    coalescer.add(receipts(7, (2, 5, 1, [])))
    coalescer.add(receipts(7, (2, 4, 3, [])))  # an older delivered mark crossing a newer read
    await asyncio.sleep(0.02)
    assert all(len(socket.frames) == 1 for socket in routes["conv.7"])
    assert {socket.frames[0]["text"] for socket in routes["conv.7"]} == {json.dumps(
        {"type": "receipt", "conversation": 7, "user": 2, "delivered_seq": 5, "read_seq": 3})}
    # serialized once: every socket got the very same string
    assert len({id(socket.frames[0]["text"]) for socket in routes["conv.7"]}) == 1


async def test_a_later_advance_waits_out_the_window_of_the_last_frame(process):
    coalescer, routes = process
    coalescer.add(receipts(7, (2, 1, 0, [])))
    await asyncio.sleep(0.01)
    assert all(len(s.frames) == 1 for s in routes["conv.7"])  # the first goes out at once
    coalescer.add(receipts(7, (2, 2, 0, [])))
    await asyncio.sleep(0.01)
    assert all(len(s.frames) == 1 for s in routes["conv.7"])  # inside the window: held
    await asyncio.sleep(0.1)
    assert all(json.loads(s.frames[-1]["text"])["delivered_seq"] == 2 for s in routes["conv.7"])


async def test_in_large_conversations_only_the_users_own_sockets_get_it_minus_the_acking_device(process):
    coalescer, routes = process
    coalescer.add(receipts(7, (2, 9, 0, ["phone"]), own_only=True))
    await asyncio.sleep(0.02)
    assert all(s.frames == [] for s in routes["conv.7"])
    frames = [s.frames[0] for s in routes["user.2"]]
    assert all(f["own_user"] == 2 and f["except_devices"] == {"phone"} for f in frames)


async def test_a_deferred_receipt_is_released_with_the_latest_marks(process, monkeypatch):
    from messaging import degraded

    coalescer, routes = process
    monkeypatch.setattr(degraded, "sheds", lambda kind: kind == degraded.RECEIPTS)
    coalescer.add(receipts(7, (2, 1, 1, [])))
    coalescer.add(receipts(7, (2, 3, 2, [])))
    await asyncio.sleep(0.1)
    assert all(s.frames == [] for s in routes["conv.7"])
    monkeypatch.setattr(degraded, "sheds", lambda kind: False)
    coalescer.release()
    assert [json.loads(s.frames[0]["text"])["read_seq"] for s in routes["conv.7"]] == [2, 2, 2]
