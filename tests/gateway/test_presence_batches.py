"""Presence counts under a reconnect storm (gateway.presence): the greetings and closes that
arrive while a batch is applied are applied together, and each user whose first socket came
(or last went) is announced once to their small conversations."""
from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache

from gateway.db import DatabaseThreads
from gateway.presence import PresenceAnnouncer
from messaging import presence
from messaging.layer import conversation_group

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_presence_left_over():
    cache.clear()


async def announcements(channel: str) -> list[tuple[int, bool]]:
    layer, got = get_channel_layer(), []
    while True:
        try:
            event = await asyncio.wait_for(layer.receive(channel), 0.5)
        except asyncio.TimeoutError:
            return got
        got.append((event["user"], event["online"]))


@pytest.fixture
def room(make_user, make_group):
    owner = make_user("owner")
    members = [make_user(f"member{n}") for n in range(40)]
    return make_group(owner, members), members


async def test_a_storm_of_greetings_is_counted_in_a_few_batches_and_each_user_announced_once(room):
    group, members = room
    layer = get_channel_layer()
    listener = await layer.new_channel("test.")
    await layer.group_add(conversation_group(group.pk), listener)
    threads = DatabaseThreads(4)
    announcer = PresenceAnnouncer(db=threads)
    try:
        # Every member greets twice (two devices): counted, but announced once.
        await asyncio.gather(*(announcer.came_online(m.pk) for m in members for _ in range(2)))
        assert announcer.batches <= 2
        online = await database_sync_to_async(presence.online_user_ids)([m.pk for m in members])
        assert online == {m.pk for m in members}
        assert sorted(await announcements(listener)) == sorted((m.pk, True) for m in members)
    finally:
        threads.shutdown()


async def test_a_socket_that_closes_and_comes_back_within_one_batch_changes_nothing(room):
    group, members = room
    first, second = members[0], members[1]
    layer = get_channel_layer()
    listener = await layer.new_channel("test.")
    threads = DatabaseThreads(2)
    announcer = PresenceAnnouncer(db=threads)
    try:
        await announcer.came_online(first.pk)
        await layer.group_add(conversation_group(group.pk), listener)
        # A blip: the close and the new greeting land in one batch; a second user leaves for good.
        await asyncio.gather(announcer.came_online(second.pk), announcer.went_offline(first.pk),
                             announcer.came_online(first.pk))
        await announcer.went_offline(second.pk)
        assert await database_sync_to_async(presence.online_user_ids)([first.pk, second.pk]) == {first.pk}
        assert await announcements(listener) == [(second.pk, True), (second.pk, False)]
    finally:
        threads.shutdown()
