"""Moderation and abuse controls as a socket sees them (CONTRACT, "WebSocket" and "Moderation")."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from messaging.send import do_send_message
from messaging.moderation import do_flag_message, do_resolve_flag, do_set_suspended

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "a message that will be removed"


@pytest.fixture
def room(make_user, make_moderator, make_device, make_group):
    alice, bob, mod = make_user("alice"), make_user("bob"), make_moderator("mod")
    group = make_group(alice, [bob])
    return {"alice": alice, "bob": bob, "mod": mod, "group": group,
            "alice_phone": make_device(alice), "bob_phone": make_device(bob)}


async def closed_with(socket, timeout: float = 3) -> int:
    while True:
        output = await socket.communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"]


@database_sync_to_async
def remove(room, message_id):
    flag = do_flag_message(reporter=room["bob"], message_id=message_id, reason="abuse")
    do_resolve_flag(moderator=room["mod"], flag_id=flag.pk, action="remove_message")


@database_sync_to_async
def send(room, key, body=SECRET):
    return do_send_message(sender=room["alice"], conversation_id=room["group"].pk, client_msg_id=key, body=body)


async def test_connected_members_get_message_removed_and_replay_shows_only_the_tombstone(room, open_socket):
    bob = await open_socket(room["bob"], room["bob_phone"])
    message = (await send(room, "k1")).message
    assert (await bob.recv_type("message"))["message"]["body"] == SECRET
    await remove(room, message.pk)
    assert await bob.recv_type("message.removed") == {
        "type": "message.removed", "conversation": room["group"].pk, "id": message.pk, "seq": 1}
    await bob.send({"type": "replay", "conversation": room["group"].pk, "after_seq": 0})
    (replayed,) = (await bob.recv_type("messages"))["messages"]
    assert (replayed["state"], replayed["body"]) == ("removed", "")
    await bob.close()


async def test_a_device_that_was_away_hears_of_the_removal_at_its_next_hello(room, open_socket):
    message = (await send(room, "k1")).message
    first = await open_socket(room["bob"], room["bob_phone"])  # gets the text, acks it, leaves
    await first.send({"type": "ack", "conversation": room["group"].pk, "seq": 1})
    await first.close()
    await remove(room, message.pk)
    again = await open_socket(room["bob"], room["bob_phone"], hello=False)
    await again.send({"type": "hello", "cursors": {str(room["group"].pk): 1}})
    removed = await again.recv_type("message.removed", "ready")
    assert (removed["type"], removed["id"]) == ("message.removed", message.pk)
    assert (await again.recv_type("ready"))["conversations"] == {str(room["group"].pk): 1}
    await again.close()


async def test_a_suspended_users_sockets_close_with_4403_and_new_handshakes_are_refused(room, open_socket):
    alice = await open_socket(room["alice"], room["alice_phone"])
    bob = await open_socket(room["bob"], room["bob_phone"])
    await database_sync_to_async(do_set_suspended)(moderator=room["mod"], user_id=room["alice"].pk, suspended=True)
    assert await closed_with(alice) == 4403
    refused = await open_socket(room["alice"], room["alice_phone"], hello=False)
    assert await closed_with(refused) == 4403
    await bob.send({"type": "ping"})
    assert (await bob.recv_type("pong"))["type"] == "pong"
    await bob.close()


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


async def test_a_client_that_keeps_going_past_refusals_is_closed_with_4429(room, open_socket, settings):
    settings.PARLEY_RATE_WS_FRAMES = "1/m"
    settings.PARLEY_RATE_WS_REFUSALS = "3/m"
    alice = await open_socket(room["alice"], room["alice_phone"])
    for _ in range(4):
        await alice.send({"type": "ping"})
    assert await closed_with(alice) == 4429


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
