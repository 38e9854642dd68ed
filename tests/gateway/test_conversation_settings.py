"""Conversation management seen live on members' sockets (issue 13 item 3): a rename or a new
topic, someone added or leaving, a member's own notification settings on their other devices,
and a removed member's sockets hearing nothing more."""
from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from messaging.conversations import (
    do_add_members,
    do_remove_member,
    do_update_conversation,
    do_update_my_settings,
)
from messaging.send import do_send_message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trio(make_user, make_device, make_group):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    group = make_group(alice, [bob], title="Team")
    return alice, bob, carol, group, make_device(alice), make_device(bob), make_device(carol)


async def test_members_see_a_rename_and_a_topic_live(trio, open_socket):
    alice, bob, _carol, group, alice_phone, bob_phone, _ = trio
    a, b = await open_socket(alice, alice_phone), await open_socket(bob, bob_phone)
    await database_sync_to_async(do_update_conversation)(actor=alice, conversation_id=group.pk,
                                                         title="Core", topic="Ship on Friday")
    for socket, role in ((a, "owner"), (b, "member")):
        updated = (await socket.recv_type("conversation.updated"))["conversation"]
        assert (updated["id"], updated["title"], updated["topic"], updated["me"]["role"]) == (
            group.pk, "Core", "Ship on Friday", role)


async def test_members_see_someone_added_and_someone_leaving(trio, open_socket):
    alice, bob, carol, group, _, bob_phone, carol_phone = trio
    b, c = await open_socket(bob, bob_phone), await open_socket(carol, carol_phone)
    await database_sync_to_async(do_add_members)(actor=alice, conversation_id=group.pk, user_ids=[carol.pk])
    assert (await c.recv_type("conversation.joined"))["conversation"]["member_count"] == 3
    assert (await b.recv_type("conversation.updated"))["conversation"]["member_count"] == 3

    await database_sync_to_async(do_remove_member)(actor=carol, conversation_id=group.pk, user_id=carol.pk)
    assert (await c.recv_type("conversation.left"))["conversation"]["me"] is None
    assert (await b.recv_type("conversation.updated"))["conversation"]["member_count"] == 2
    await database_sync_to_async(do_send_message)(sender=alice, conversation_id=group.pk, client_msg_id="after",
                                                  body="carol is gone")
    assert (await b.recv_type("message"))["message"]["body"] == "carol is gone"
    assert await c.nothing(0.5)


async def test_muting_on_one_device_shows_on_the_others(trio, open_socket, make_device):
    _alice, bob, _carol, group, _, bob_phone, _ = trio
    bob_laptop = await database_sync_to_async(make_device)(bob, name="laptop")
    laptop = await open_socket(bob, bob_laptop)
    await open_socket(bob, bob_phone)
    until = timezone.now() + timedelta(hours=1)
    await database_sync_to_async(do_update_my_settings)(user=bob, conversation_id=group.pk, notify="mentions",
                                                        muted_until=until)
    me = (await laptop.recv_type("conversation.updated"))["conversation"]["me"]
    assert me["notify"] == "mentions" and me["muted_until"] is not None
