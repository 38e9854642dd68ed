"""Attachments over the socket: a ``send`` frame attaches uploads, and the message carries
them in the live frame, the replay page and the change stream alike."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from messaging.attachments import do_upload
from messaging.changes import do_delete_message
from messaging.send import do_send_message
from tests import files

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chat(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    return alice, make_device(alice), bob, make_device(bob), group


def upload_photo(user, group):
    return do_upload(uploader=user, file=files.upload(files.png(40, 30), "photo.png"), conversation_id=group.pk).pk


async def test_a_send_frame_attaches_uploads_and_the_live_frame_carries_them(chat, open_socket):
    alice, alice_device, bob, bob_device, group = chat
    photo = await database_sync_to_async(upload_photo)(alice, group)
    receiver = await open_socket(bob, bob_device)
    sender = await open_socket(alice, alice_device)
    await sender.send({"type": "send", "conversation": group.pk, "client_msg_id": "p1", "body": "",
                       "attachments": [photo]})
    ok = await sender.recv_type("send.ok")
    (attached,) = ok["message"]["attachments"]
    assert (attached["id"], attached["content_type"], attached["width"]) == (photo, "image/png", 40)
    live = await receiver.recv_type("message")
    assert live["message"]["attachments"] == ok["message"]["attachments"]


async def test_a_send_frame_with_someone_elses_upload_is_refused_and_stores_nothing(chat, open_socket):
    alice, alice_device, bob, _bob_device, group = chat
    bobs = await database_sync_to_async(upload_photo)(bob, group)
    sender = await open_socket(alice, alice_device)
    await sender.send({"type": "send", "conversation": group.pk, "client_msg_id": "p1", "body": "hi",
                       "attachments": [bobs]})
    refused = await sender.recv_type("send.error")
    assert (refused["code"], refused["client_msg_id"]) == ("invalid", "p1")
    assert await database_sync_to_async(lambda: group.messages.count())() == 0


async def test_a_device_back_from_away_gets_the_attachments_in_its_replay_and_the_change_stream(
        chat, open_socket):
    alice, _alice_device, bob, bob_device, group = chat

    def while_away():
        photo = upload_photo(alice, group)
        sent = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="a1", body="look",
                               attachments=[photo])
        do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="a2", body="and this",
                        attachments=[upload_photo(alice, group)])
        do_delete_message(actor=alice, message_id=sent.message.pk)
        connections.close_all()
        return photo

    await database_sync_to_async(while_away)()
    socket = await open_socket(bob, bob_device, hello=False)
    await socket.send({"type": "hello", "cursors": {str(group.pk): 0}, "changes": {str(group.pk): 0}})
    page = await socket.recv_type("messages")
    first, second = page["messages"]
    assert first["state"] == "deleted" and first["attachments"] == []
    assert len(second["attachments"]) == 1 and second["attachments"][0]["thumbnail_url"]
    changes = await socket.recv_type("changes")
    assert changes["changes"][0]["kind"] == "deleted" and changes["changes"][0]["message"]["attachments"] == []
