"""The change stream over the socket (CONTRACT v1.1, "The change stream"): hello's change
pages before ready, ``replay_changes``, live ``change`` frames in order with the gap filled
from the store, the tail check for a lost last change, and authorization."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from messaging import fanout
from messaging.changes import do_delete_message, do_edit_message
from messaging.conversations import do_remove_member
from messaging.reactions import do_add_reaction, do_remove_reaction
from messaging.send import do_send_message

pytestmark = pytest.mark.django_db(transaction=True)

edit = database_sync_to_async(do_edit_message)
react = database_sync_to_async(do_add_reaction)
unreact = database_sync_to_async(do_remove_reaction)
delete = database_sync_to_async(do_delete_message)


@pytest.fixture
def chat(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    message = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="m1", body="hello").message
    devices = make_device(alice, "alice's"), make_device(bob, "bob's")
    connections.close_all()
    return alice, bob, group, message, devices


async def hello(socket, cursors=None, changes=None) -> tuple[list[dict], dict]:
    frame: dict = {"type": "hello", "cursors": {str(k): v for k, v in (cursors or {}).items()}}
    if changes is not None:
        frame["changes"] = {str(k): v for k, v in changes.items()}
    await socket.send(frame)
    pages = []
    while True:
        got = await socket.recv_type("changes", "ready")
        if got["type"] == "ready":
            return pages, got
        pages.append(got)


async def changes_in(socket, count: int) -> list[dict]:
    return [await socket.recv_type("change") for _ in range(count)]


async def test_members_get_each_change_live_in_order_with_the_message_as_it_now_is(chat, open_socket):
    alice, bob, group, message, (alice_device, bob_device) = chat
    socket = await open_socket(bob, bob_device, hello=False)
    _, ready = await hello(socket, changes={group.pk: 0})
    assert ready["changes"] == {str(group.pk): 0}
    await edit(editor=alice, message_id=message.pk, body="hello, world")
    await react(user=bob, message_id=message.pk, emoji="👍")
    await delete(actor=alice, message_id=message.pk)
    frames = await changes_in(socket, 3)
    assert [(f["change"], f["kind"], f["actor"]) for f in frames] == [
        (1, "edited", alice.pk), (2, "reaction", bob.pk), (3, "deleted", alice.pk)]
    assert frames[0]["message"]["body"] == "hello, world" and frames[0]["message"]["version"] == 1
    assert frames[1]["message"]["reactions"] == [{"emoji": "👍", "count": 1, "users": [bob.pk]}]
    assert (frames[2]["message"]["state"], frames[2]["message"]["body"]) == ("deleted", "")
    removed = await socket.recv_type("message.removed")  # the v1 frame for clients without the stream
    assert (removed["id"], removed["seq"]) == (message.pk, 1)


async def test_a_hello_without_change_cursors_replays_no_changes_but_follows_them_live(chat, open_socket):
    alice, bob, group, message, (_, bob_device) = chat
    await edit(editor=alice, message_id=message.pk, body="before")
    socket = await open_socket(bob, bob_device, hello=False)
    pages, ready = await hello(socket)
    assert pages == [] and ready["changes"] == {str(group.pk): 1}
    await edit(editor=alice, message_id=message.pk, body="after")
    (frame,) = await changes_in(socket, 1)
    assert (frame["change"], frame["message"]["body"]) == (2, "after")


async def test_a_device_away_during_300_changes_gets_each_once_in_pages(chat, open_socket, settings):
    alice, bob, group, message, (_, bob_device) = chat
    for i in range(150):
        await react(user=alice, message_id=message.pk, emoji="👍")
        await unreact(user=alice, message_id=message.pk, emoji="👍")
    socket = await open_socket(bob, bob_device, hello=False)
    pages, ready = await hello(socket, changes={group.pk: 0})
    assert ready["changes"] == {str(group.pk): 300}
    (first,) = pages
    assert (len(first["changes"]), first["has_more"]) == (200, True)
    got = [c["change"] for c in first["changes"]]
    await socket.send({"type": "replay_changes", "conversation": group.pk, "after": got[-1], "limit": 500})
    page = await socket.recv_type("changes")
    assert page["has_more"] is False
    got += [c["change"] for c in page["changes"]]
    assert got == list(range(1, 301))
    assert page["changes"][-1]["message"]["reactions"] == []
    await edit(editor=alice, message_id=message.pk, body="live again")
    (frame,) = await changes_in(socket, 1)
    assert frame["change"] == 301


async def test_live_changes_wait_while_the_client_pages_and_then_arrive_without_a_gap(chat, open_socket, settings):
    settings.PARLEY_REPLAY_PAGE_SIZE = 5
    alice, bob, group, message, (_, bob_device) = chat
    for i in range(12):
        await edit(editor=alice, message_id=message.pk, body=f"v{i}")
    socket = await open_socket(bob, bob_device, hello=False)
    pages, _ = await hello(socket, changes={group.pk: 0})
    got = [c["change"] for c in pages[0]["changes"]]
    await edit(editor=alice, message_id=message.pk, body="while paging")  # change 13, deferred
    assert await socket.nothing()
    while True:
        await socket.send({"type": "replay_changes", "conversation": group.pk, "after": got[-1]})
        page = await socket.recv_type("changes")
        got += [c["change"] for c in page["changes"]]
        if not page["has_more"]:
            break
    assert got == list(range(1, 14))  # the deferred change came with the pages, once
    assert await socket.nothing()


async def test_a_lost_change_doorbell_is_filled_from_the_store_before_the_next(chat, open_socket, monkeypatch):
    alice, bob, group, message, (_, bob_device) = chat
    socket = await open_socket(bob, bob_device, hello=False)
    await hello(socket, changes={group.pk: 0})
    publish = fanout.message_changed
    monkeypatch.setattr(fanout, "message_changed", lambda record: None)
    await edit(editor=alice, message_id=message.pk, body="lost")
    monkeypatch.setattr(fanout, "message_changed", publish)
    await react(user=bob, message_id=message.pk, emoji="🎉")
    frames = await changes_in(socket, 2)
    assert [(f["change"], f["kind"]) for f in frames] == [(1, "edited"), (2, "reaction")]
    assert frames[0]["message"]["body"] == "lost"


async def test_the_tail_check_repairs_a_lost_last_change(chat, open_socket, monkeypatch):
    from gateway import runtime

    alice, bob, group, message, (_, bob_device) = chat
    socket = await open_socket(bob, bob_device, hello=False)
    await hello(socket, changes={group.pk: 0})
    monkeypatch.setattr(fanout, "message_changed", lambda record: None)
    await edit(editor=alice, message_id=message.pk, body="nothing rings after this")
    hub = (await runtime.current()).hub
    await hub._tail_check()  # behind once: maybe in flight
    assert await socket.nothing()
    await hub._tail_check()  # behind twice: lost
    (frame,) = await changes_in(socket, 1)
    assert (frame["change"], frame["message"]["body"]) == (1, "nothing rings after this")


async def test_a_removed_member_gets_no_more_changes_and_cannot_replay_them(chat, open_socket, make_user):
    alice, bob, group, message, (_, bob_device) = chat
    socket = await open_socket(bob, bob_device, hello=False)
    await hello(socket, changes={group.pk: 0})
    await database_sync_to_async(do_remove_member)(actor=alice, conversation_id=group.pk, user_id=bob.pk)
    await socket.recv_type("conversation.left")
    await edit(editor=alice, message_id=message.pk, body="not for bob")
    assert await socket.nothing(0.5)
    await socket.send({"type": "replay_changes", "conversation": group.pk, "after": 0})
    error = await socket.recv_type("error")
    assert error["code"] == "not_found"


@pytest.mark.parametrize("frame", [
    {"type": "replay_changes", "conversation": 1},
    {"type": "replay_changes", "conversation": 1, "after": -1},
    {"type": "replay_changes", "conversation": 1, "after": "0"},
    {"type": "replay_changes", "conversation": 1, "after": 0, "limit": 0},
    {"type": "hello", "changes": {"x": 1}},
    {"type": "hello", "changes": [1]},
    {"type": "hello", "changes": {"1": -1}},
])
async def test_malformed_change_frames_get_an_error_and_the_socket_stays(chat, open_socket, frame):
    alice, bob, group, message, (_, bob_device) = chat
    socket = await open_socket(bob, bob_device, hello=frame["type"] != "replay_changes")
    await socket.send(frame)
    assert (await socket.recv_type("error"))["code"] == "invalid"
    await socket.send({"type": "ping"})
    assert (await socket.recv_type("pong"))["type"] == "pong"


async def test_a_send_frame_may_answer_a_message_and_a_reply_to_elsewhere_is_refused(chat, open_socket, make_user,
                                                                                     make_group):
    alice, bob, group, message, (_, bob_device) = chat
    socket = await open_socket(bob, bob_device)
    await socket.send({"type": "send", "conversation": group.pk, "client_msg_id": "r1", "body": "hi back",
                       "reply_to": message.pk})
    ok = await socket.recv_type("send.ok")
    assert ok["message"]["reply_to"] == {"id": message.pk, "seq": 1, "excerpt": "hello", "state": "visible",
                                         "sender": {"id": alice.pk, "username": "alice", "display_name": "alice"}}
    elsewhere = await database_sync_to_async(lambda: make_group(bob, [make_user("carol")]))()
    await socket.send({"type": "send", "conversation": elsewhere.pk, "client_msg_id": "r2", "body": "no",
                       "reply_to": message.pk})
    refused = await socket.recv_type("send.error")
    assert (refused["code"], refused["client_msg_id"]) == ("invalid", "r2")
