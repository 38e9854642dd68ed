"""Moderation as a socket sees it: removals, tombstones, suspension (CONTRACT, "WebSocket" and "Moderation")."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from messaging.moderation import do_flag_message, do_resolve_flag, do_set_suspended
from messaging.send import do_send_message

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "a message that will be removed"


@pytest.fixture
def room(make_user, make_moderator, make_device, make_group):
    alice, bob, mod = make_user("alice"), make_user("bob"), make_moderator("mod")
    group = make_group(alice, [bob])
    return {"alice": alice, "bob": bob, "mod": mod, "group": group,
            "alice_phone": make_device(alice), "bob_phone": make_device(bob)}



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
    assert await alice.closed_with() == 4403
    refused = await open_socket(room["alice"], room["alice_phone"], hello=False)
    assert await refused.closed_with() == 4403
    await bob.send({"type": "ping"})
    assert (await bob.recv_type("pong"))["type"] == "pong"
    await bob.close()
