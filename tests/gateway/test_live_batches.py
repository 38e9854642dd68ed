"""Live batches (issue 15): a socket with several messages of a conversation queued gets them
as one ``messages`` frame, a contiguous run with ``has_more`` false (CONTRACT, "messages"),
its text built from each message's JSON encoded once per process."""
from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from hypothesis import given
from hypothesis import strategies as st

from gateway import runtime
from gateway.connection import MessageRun, coalesce
from gateway.frames import decode, encode, frame_text, message_json, run_text
from gateway.notices import Resync
from messaging import fanout
from messaging.events import message_event, messages_frame
from messaging.layer import conversation_group
from messaging.send import do_send_message

send = database_sync_to_async(do_send_message)


def event(conversation: int, seq: int) -> dict:
    return {"type": "conv.message", "conversation": conversation, "seq": seq, "message": {"seq": seq}}


def shape(items) -> list:
    return [("run", i.conversation_id, [e["seq"] for e in i.events]) if isinstance(i, MessageRun)
            else (i["type"], i.get("conversation"), i.get("seq")) if isinstance(i, dict) else type(i).__name__
            for i in items]


def test_consecutive_seqs_of_a_conversation_become_one_run():
    assert shape(coalesce([event(1, 4), event(1, 5), event(1, 6)])) == [("run", 1, [4, 5, 6])]


def test_a_lone_message_stays_an_event():
    assert shape(coalesce([event(1, 4)])) == [("conv.message", 1, 4)]


def test_runs_gather_past_messages_of_other_conversations_only():
    batch = [event(1, 4), event(2, 9), event(1, 5), event(2, 10)]
    assert shape(coalesce(batch)) == [("run", 1, [4, 5]), ("run", 2, [9, 10])]


def test_any_other_event_is_a_barrier_nothing_crosses():
    removed = {"type": "conv.removed", "conversation": 1, "id": 7, "seq": 4}
    batch = [event(1, 4), removed, event(1, 5), Resync(), event(1, 6)]
    assert shape(coalesce(batch)) == [("conv.message", 1, 4), ("conv.removed", 1, 4), ("conv.message", 1, 5),
                                      "Resync", ("conv.message", 1, 6)]


def test_a_seq_that_does_not_follow_starts_a_new_run():
    batch = [event(1, 4), event(1, 5), event(1, 7), event(1, 8), event(1, 5)]
    assert shape(coalesce(batch)) == [("run", 1, [4, 5]), ("run", 1, [7, 8]), ("conv.message", 1, 5)]


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 12)), max_size=30))
def test_coalescing_keeps_every_event_and_each_conversations_order(arrivals):
    batch = [event(c, s) for c, s in arrivals]
    out = coalesce(batch)
    flat = [e for item in out for e in (item.events if isinstance(item, MessageRun) else [item])]
    assert sorted(map(id, flat)) == sorted(map(id, batch))
    for conversation in {c for c, _ in arrivals}:
        assert [e["seq"] for e in flat if e["conversation"] == conversation] == \
               [s for c, s in arrivals if c == conversation]
    for item in out:
        if isinstance(item, MessageRun):
            seqs = [e["seq"] for e in item.events]
            assert len(seqs) > 1 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_a_run_frame_is_the_messages_frame_of_its_messages():
    messages = [{"id": i, "seq": i, "body": f"caf\u00e9 {i} \"quoted\""} for i in (3, 4)]
    events = [{"type": "conv.message", "conversation": 12, "seq": m["seq"], "message": m} for m in messages]
    text = run_text(12, [message_json(e) for e in events])
    assert json.loads(text) == messages_frame(12, messages, has_more=False)  # type: ignore[arg-type]
    assert events[0]["_message"] is message_json(events[0])  # encoded once, shared


def test_a_frame_is_encoded_once_per_event():
    e = event(1, 1)
    assert frame_text(e, {"type": "message"}) is frame_text(e, {"type": "ignored: the cached text wins"})


def test_what_orjson_refuses_is_decoded_as_before():
    assert decode('{"type": "send", "body": "\\ud800"}')["body"] == "\ud800"  # judged later, as invalid text
    assert decode(encode({"1": 2, 3: [4]})) == {"1": 2, "3": [4]}
    with pytest.raises(ValueError):
        decode("{not json")


@pytest.fixture
def pair(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    return alice, bob, group, make_device(alice), make_device(bob)


async def stored_silently(monkeypatch, alice, group, n: int, prefix: str = "m") -> list[dict]:
    """Store ``n`` messages without ringing their doorbells (the test rings them)."""
    publish = fanout.message_stored
    monkeypatch.setattr(fanout, "message_stored", lambda **kwargs: None)
    results = [await send(sender=alice, conversation_id=group.pk, client_msg_id=f"{prefix}{i}", body=f"{prefix} {i}")
               for i in range(n)]
    monkeypatch.setattr(fanout, "message_stored", publish)
    return [r.payload for r in results]


def ring(hub, group, payloads) -> None:
    """The doorbells of ``payloads``, all in one turn of the loop: they queue behind each other."""
    for payload in payloads:
        hub.dispatch({**message_event(payload), "group": conversation_group(group.pk)})


@pytest.mark.django_db(transaction=True)
async def test_messages_queued_for_a_socket_leave_as_one_contiguous_messages_frame(pair, open_socket, monkeypatch):
    alice, bob, group, _, bob_phone = pair
    b = await open_socket(bob, bob_phone)
    payloads = await stored_silently(monkeypatch, alice, group, 3)
    ring((await runtime.current()).hub, group, payloads)
    frame = await b.recv_type("message", "messages")
    assert frame["type"] == "messages" and frame["conversation"] == group.pk and frame["has_more"] is False
    assert [m["seq"] for m in frame["messages"]] == [1, 2, 3]
    assert frame["messages"] == json.loads(json.dumps(payloads))
    await b.close()


@pytest.mark.django_db(transaction=True)
async def test_a_queued_run_after_a_lost_doorbell_is_filled_from_the_store_in_order(pair, open_socket, monkeypatch):
    alice, bob, group, _, bob_phone = pair
    b = await open_socket(bob, bob_phone)
    payloads = await stored_silently(monkeypatch, alice, group, 4)
    ring((await runtime.current()).hub, group, payloads[2:])  # the doorbells of 1 and 2 were lost
    assert [m["seq"] for m in await b.recv_messages(4)] == [1, 2, 3, 4]
    await b.close()


@pytest.mark.django_db(transaction=True)
async def test_a_queued_run_never_repeats_what_the_socket_holds(pair, open_socket, monkeypatch):
    alice, bob, group, _, bob_phone = pair
    b = await open_socket(bob, bob_phone)
    hub = (await runtime.current()).hub
    payloads = await stored_silently(monkeypatch, alice, group, 4)
    ring(hub, group, payloads[:2])
    assert [m["seq"] for m in await b.recv_messages(2)] == [1, 2]
    ring(hub, group, payloads)  # 1 and 2 again (a duplicate doorbell), then 3 and 4
    assert [m["seq"] for m in await b.recv_messages(2)] == [3, 4]
    frames = []
    while not await b.nothing(0.3):
        frames.append(await b.recv())
    assert not [f for f in frames if f["type"] in ("message", "messages")]
    await b.close()


@pytest.mark.django_db(transaction=True)
async def test_a_hello_whose_first_page_another_socket_just_read_takes_no_replay_slot(
        make_user, make_device, make_group, open_socket):
    """A reconnect storm: the members of a conversation come back with the same cursor. The
    first hello reads the page (within the replay budget); the others share it and need no
    slot, so a budget spent elsewhere does not hold them."""
    alice = await database_sync_to_async(make_user)("alice")
    others = [await database_sync_to_async(make_user)(f"u{i}") for i in range(3)]
    group = await database_sync_to_async(make_group)(alice, others)
    for i in range(5):
        await send(sender=alice, conversation_id=group.pk, client_msg_id=f"m{i}", body=f"m {i}")
    gateway = await runtime.current()
    first = await open_socket(others[0], await database_sync_to_async(make_device)(others[0]),
                              cursors={group.pk: 0})
    reads = gateway.fills.reads
    gateway.admission._capacity = 0  # the budget is spent: a hello that needs a slot would wait
    rest = [await open_socket(u, await database_sync_to_async(make_device)(u), hello=False) for u in others[1:]]
    for socket in rest:
        pages, _ = await socket.hello({group.pk: 0})
        assert [m["seq"] for m in pages[0]["messages"]] == [1, 2, 3, 4, 5]
    assert gateway.fills.reads == reads  # the page was read once, by the first hello
    await first.close()
