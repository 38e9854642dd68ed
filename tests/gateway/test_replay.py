"""Resuming after time away: exactly the missed messages, in bounded pages, then ready."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from messaging.send import do_send_message
from receipts.models import DeviceCursor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def five_conversations(make_user, make_device, make_group):
    """Bob's device saw 20 messages in each of five groups, then 100 more arrived in each while away."""
    alice, bob = make_user("alice"), make_user("bob")
    device = make_device(bob)
    groups = [make_group(alice, [bob], title=f"g{i}") for i in range(5)]
    for group in groups:
        for i in range(120):
            do_send_message(sender=alice, conversation_id=group.pk, client_msg_id=f"{group.pk}-{i}", body=f"{i}")
    DeviceCursor.objects.raise_cursors({(g.pk, device.pk): 20 for g in groups})
    connections.close_all()
    return bob, device, groups


async def drain(socket, pages: list[dict], limit: int = 200) -> dict[int, list[int]]:
    """Pull every conversation's remaining pages the way a client does; return seqs received."""
    got: dict[int, list[int]] = {}
    for page in pages:
        assert len(page["messages"]) <= limit
        got.setdefault(page["conversation"], []).extend(m["seq"] for m in page["messages"])
    pending = [p["conversation"] for p in pages if p["has_more"]]
    while pending:
        conversation = pending.pop()
        await socket.send({"type": "replay", "conversation": conversation, "after_seq": got[conversation][-1],
                           "limit": limit})
        page = await socket.recv_type("messages")
        assert len(page["messages"]) <= limit
        got[conversation].extend(m["seq"] for m in page["messages"])
        if page["has_more"]:
            pending.append(conversation)
    return got


async def test_a_device_back_from_500_missed_messages_gets_exactly_those_from_its_stored_cursors(
    five_conversations, open_socket, settings
):
    settings.PARLEY_REPLAY_PAGE_SIZE = 40  # five pages per conversation at this size
    bob, device, groups = five_conversations
    socket = await open_socket(bob, device, hello=False)
    pages, ready = await socket.hello()
    assert ready["conversations"] == {str(g.pk): 120 for g in groups}
    assert {p["conversation"] for p in pages} == {g.pk for g in groups}
    assert all(p["has_more"] for p in pages)
    got = await drain(socket, pages, limit=40)
    assert got == {g.pk: list(range(21, 121)) for g in groups}
    assert sum(len(v) for v in got.values()) == 500
    await socket.close()


async def test_explicit_cursors_override_the_stored_ones(five_conversations, open_socket):
    bob, device, groups = five_conversations
    socket = await open_socket(bob, device, hello=False)
    cursors = {g.pk: 110 + i for i, g in enumerate(groups)}
    pages, _ = await socket.hello(cursors)
    got = await drain(socket, pages)
    assert got == {g.pk: list(range(111 + i, 121)) for i, g in enumerate(groups)}
    await socket.close()


async def test_replay_pages_never_exceed_200_messages(make_user, make_device, make_group, open_socket):
    alice, bob = await database_sync_to_async(make_user)("alice"), await database_sync_to_async(make_user)("bob")
    device = await database_sync_to_async(make_device)(bob)
    group = await database_sync_to_async(make_group)(alice, [bob])
    for i in range(450):
        await database_sync_to_async(do_send_message)(sender=alice, conversation_id=group.pk,
                                                      client_msg_id=f"k{i}", body="x")
    socket = await open_socket(bob, device, hello=False)
    pages, _ = await socket.hello()
    await socket.send({"type": "replay", "conversation": group.pk, "after_seq": 0, "limit": 1000})
    page = await socket.recv_type("messages")
    assert len(pages[0]["messages"]) == 200 and len(page["messages"]) == 200 and page["has_more"]
    await socket.close()
