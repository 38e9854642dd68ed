"""The reference client (ops/client.py): acks on a short timer, and live batches taken like
single frames (issue 15)."""
from __future__ import annotations

import asyncio
import json

from ops.client import ParleyClient


class Wire:
    """The client's side of a socket: what it sends."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def acks(self) -> list[dict]:
        return [frame for frame in self.sent if frame["type"] == "ack"]


def message(conversation: int, seq: int) -> dict:
    return {"id": seq, "conversation": conversation, "seq": seq, "body": f"m{seq}"}


async def until(condition, limit: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


def ready_client(**options) -> ParleyClient:
    client = ParleyClient(["http://127.0.0.1:1"], token="t", device_id="d", **options)
    client.ready.set()
    return client


async def test_frames_arriving_together_are_answered_by_one_cumulative_ack_with_the_latest_cursor():
    client, wire = ready_client(ack_interval=0.05), Wire()
    for seq in (1, 2, 3):
        await client._on_frame(wire, {"type": "message", "message": message(7, seq)})
    await client._on_frame(wire, {"type": "message", "message": message(8, 1)})
    assert wire.acks() == []  # not one per frame
    await until(lambda: len(wire.acks()) == 2)
    await asyncio.sleep(0.1)  # and nothing more for them
    assert sorted((a["conversation"], a["seq"]) for a in wire.acks()) == [(7, 3), (8, 1)]
    assert client.acks_sent == 2


async def test_a_frame_after_the_ack_went_out_gets_an_ack_of_its_own():
    client, wire = ready_client(ack_interval=0.02), Wire()
    await client._on_frame(wire, {"type": "message", "message": message(7, 1)})
    await until(lambda: len(wire.acks()) == 1)
    await client._on_frame(wire, {"type": "message", "message": message(7, 2)})
    await until(lambda: len(wire.acks()) == 2)
    assert [a["seq"] for a in wire.acks()] == [1, 2]


async def test_a_client_that_does_not_ack_never_does():
    client, wire = ready_client(ack=False, ack_interval=0.01), Wire()
    await client._on_frame(wire, {"type": "message", "message": message(7, 1)})
    await asyncio.sleep(0.05)
    assert wire.acks() == []


async def test_a_live_batch_is_taken_as_its_messages_in_order():
    seen = []
    client, wire = ready_client(ack_interval=0.01, on_message=lambda d: seen.append(d.seq)), Wire()
    await client._on_frame(wire, {"type": "message", "message": message(7, 1)})
    await client._on_frame(wire, {"type": "messages", "conversation": 7, "has_more": False,
                                  "messages": [message(7, 2), message(7, 3), message(7, 4)]})
    assert seen == [1, 2, 3, 4] and client.violations == []
    await until(lambda: wire.acks() and wire.acks()[-1]["seq"] == 4)
    assert not [f for f in wire.sent if f["type"] == "replay"]  # has_more false: nothing to pull
