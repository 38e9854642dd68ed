"""Abuse controls as a socket sees them: send, frame, refusal and typing rates (docs/security.md)."""
from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_counters():
    """The shared counters are keyed by user id, and ids start again with each test database:
    a run shortly after another would find its counts."""
    cache.clear()


@pytest.fixture
def room(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    return {"alice": alice, "bob": bob, "group": group,
            "alice_phone": make_device(alice), "bob_phone": make_device(bob)}



async def test_a_send_over_the_rate_gets_rate_limited_with_retry_after_ms(room, open_socket, settings):
    settings.PARLEY_RATE_SEND = "2/m"
    alice = await open_socket(room["alice"], room["alice_phone"])
    for key in ("a", "b", "c"):
        await alice.send({"type": "send", "conversation": room["group"].pk, "client_msg_id": key, "body": "hi"})
    replies = [await alice.recv_type("send.ok", "send.error") for _ in range(3)]
    assert [r["type"] for r in replies] == ["send.ok", "send.ok", "send.error"]
    assert (replies[2]["code"], replies[2]["client_msg_id"]) == ("rate_limited", "c")
    assert 0 < replies[2]["retry_after_ms"] <= 60_000
    await alice.close()


async def test_frames_over_the_connection_rate_are_refused_unprocessed_and_acks_do_not_count(
        room, open_socket, settings):
    settings.PARLEY_RATE_WS_FRAMES = "4/m"  # hello is the first
    alice = await open_socket(room["alice"], room["alice_phone"])
    for _ in range(10):
        await alice.send({"type": "ack", "conversation": room["group"].pk, "seq": 0})
    for _ in range(3):
        await alice.send({"type": "ping"})
        assert (await alice.recv_type("pong", "error"))["type"] == "pong"
    await alice.send({"type": "send", "conversation": room["group"].pk, "client_msg_id": "x", "body": "hi"})
    refused = await alice.recv_type("send.error")
    assert (refused["code"], refused["client_msg_id"]) == ("rate_limited", "x") and refused["retry_after_ms"] > 0
    await alice.send({"type": "ping"})
    assert (await alice.recv_type("error", "pong"))["code"] == "rate_limited"
    assert not await database_sync_to_async(room["group"].messages.exists)()
    await alice.close()


async def test_a_client_that_comes_back_before_its_retry_after_is_closed_with_4429(room, open_socket, settings):
    settings.PARLEY_RATE_WS_FRAMES = "1/m"  # hello takes it
    settings.PARLEY_RATE_WS_ABUSE = "3/m"
    alice = await open_socket(room["alice"], room["alice_phone"])
    await alice.send({"type": "ping"})
    refused = await alice.recv_type("error")
    assert refused["code"] == "rate_limited" and refused["retry_after_ms"] > 1000
    for _ in range(4):  # the same frame again at once: told to wait, it did not
        await alice.send({"type": "ping"})
    assert await alice.closed_with() == 4429


async def test_refusals_alone_never_close_a_socket(room, open_socket, settings):
    settings.PARLEY_RATE_WS_FRAMES = "1/m"
    settings.PARLEY_RATE_WS_ABUSE = "1/m"
    alice = await open_socket(room["alice"], room["alice_phone"])
    for key in range(30):  # each a new send, each refused and told when to come back: none came back early
        await alice.send({"type": "send", "conversation": room["group"].pk, "client_msg_id": f"k{key}", "body": "hi"})
        assert (await alice.recv_type("send.error"))["code"] == "rate_limited"
    assert await alice.nothing()
    await alice.close()


async def test_frames_past_the_hard_cap_are_abuse_even_when_each_is_new(room, open_socket, settings):
    settings.PARLEY_RATE_WS_HARD_CAP = "10/m"
    settings.PARLEY_RATE_WS_ABUSE = "3/m"
    alice = await open_socket(room["alice"], room["alice_phone"])
    for key in range(20):
        await alice.send({"type": "send", "conversation": room["group"].pk, "client_msg_id": f"k{key}", "body": "hi"})
    assert await alice.closed_with() == 4429


async def test_a_client_keeping_eight_sends_in_flight_that_waits_each_retry_after_is_never_closed(
        room, open_socket, settings):
    """A burst far over the send and frame rates: many refusals, no 4429, every message stored once."""
    settings.PARLEY_RATE_SEND = "5/s"
    settings.PARLEY_RATE_WS_FRAMES = "8/s"
    settings.PARLEY_RATE_WS_HARD_CAP = "80/s"
    settings.PARLEY_RATE_WS_ABUSE = "1/m"  # a single early frame would close it
    alice = await open_socket(room["alice"], room["alice_phone"])
    messages = 40
    keys = iter(range(messages))
    answers: dict[str, asyncio.Queue] = {}
    refusals = 0

    async def read() -> None:
        while True:
            frame = await alice.recv_type("send.ok", "send.error", timeout=30)
            await answers[frame["client_msg_id"]].put(frame)

    async def sender() -> None:
        nonlocal refusals
        for key in keys:
            answers[f"k{key}"] = queue = asyncio.Queue()
            while True:
                await alice.send({"type": "send", "conversation": room["group"].pk, "client_msg_id": f"k{key}",
                                  "body": f"message {key}"})
                answer = await queue.get()
                if answer["type"] == "send.ok":
                    break
                assert answer["code"] == "rate_limited"
                refusals += 1
                await asyncio.sleep(answer["retry_after_ms"] / 1000)

    reader = asyncio.create_task(read())
    await asyncio.gather(*(sender() for _ in range(8)))
    reader.cancel()
    assert refusals >= messages / 4  # the burst really was over the rates
    assert await alice.still_open()  # no close frame (its own messages may still be arriving)
    stored = await database_sync_to_async(lambda: sorted(room["group"].messages.values_list("client_msg_id", flat=True)))()
    assert stored == sorted(f"k{key}" for key in range(messages))
    await alice.close()


async def test_typing_is_limited_per_user_across_devices(room, open_socket, make_device, settings):
    settings.PARLEY_RATE_TYPING = "1/m"
    laptop = await database_sync_to_async(make_device)(room["alice"], "laptop")
    phone = await open_socket(room["alice"], room["alice_phone"])
    other = await open_socket(room["alice"], laptop)
    bob = await open_socket(room["bob"], room["bob_phone"])
    for socket in (phone, other):
        await socket.send({"type": "typing", "conversation": room["group"].pk})
    assert (await bob.recv_type("typing"))["user"] == room["alice"].pk
    assert await bob.nothing(timeout=0.5)
    for socket in (phone, other, bob):
        await socket.close()
