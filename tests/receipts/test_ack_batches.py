"""A gateway process's acks, written in one batch: same merge rules as one-by-one."""
import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from gateway.ackbatch import AckBatcher
from gateway.db import DatabaseThreads
from messaging.conversations import do_remove_member
from messaging.layer import conversation_group
from messaging.models import Membership
from messaging.send import do_send_message
from receipts.models import DeviceCursor
from receipts.watermarks import record_acks


@pytest.fixture
def chat(make_user, make_device, make_group):
    alice, bob, carol = make_user(), make_user(), make_user()
    group = make_group(alice, [bob, carol])
    for i in range(10):
        do_send_message(sender=alice, conversation_id=group.pk, client_msg_id=f"k{i}", body="x")
    return group, alice, bob, carol, make_device(bob, "phone"), make_device(bob, "laptop"), make_device(carol)


def marks(conversation, user):
    return Membership.objects.values_list("delivered_seq", "read_seq").get(conversation=conversation, user=user)


@pytest.mark.django_db
def test_one_batch_moves_every_device_cursor_and_each_members_max(chat):
    group, _, bob, carol, phone, laptop, carols = chat
    advanced = record_acks({(bob.pk, phone.pk, group.pk): 4, (bob.pk, laptop.pk, group.pk): 7,
                            (carol.pk, carols.pk, group.pk): 2})
    assert sorted((r.user_id, r.delivered_seq) for r in advanced) == sorted([(bob.pk, 7), (carol.pk, 2)])
    assert dict(DeviceCursor.objects.values_list("device_id", "ack_seq")) == {phone.pk: 4, laptop.pk: 7, carols.pk: 2}
    assert marks(group, bob) == (7, 0)


@pytest.mark.django_db
def test_a_batch_never_lowers_anything_and_reports_only_real_advances(chat):
    group, _, bob, _, phone, _, _ = chat
    record_acks({(bob.pk, phone.pk, group.pk): 8})
    assert record_acks({(bob.pk, phone.pk, group.pk): 3}) == []
    assert marks(group, bob)[0] == 8
    assert DeviceCursor.objects.get(device=phone).ack_seq == 8


@pytest.mark.django_db
def test_acks_past_last_seq_are_clamped(chat):
    group, _, bob, _, phone, _, _ = chat
    (receipt,) = record_acks({(bob.pk, phone.pk, group.pk): 10_000})
    assert receipt.delivered_seq == 10 and DeviceCursor.objects.get(device=phone).ack_seq == 10


@pytest.mark.django_db
def test_a_removed_members_late_ack_is_dropped(chat):
    group, alice, bob, _, phone, _, _ = chat
    do_remove_member(actor=alice, conversation_id=group.pk, user_id=bob.pk)
    assert record_acks({(bob.pk, phone.pk, group.pk): 5}) == []
    assert not DeviceCursor.objects.filter(device=phone).exists()


@pytest.mark.django_db(transaction=True)
async def test_one_flush_publishes_one_receipts_event_per_conversation_for_every_member_that_advanced(chat):
    """Nine members acking one message must not cost nine layer messages per gateway."""
    group, _, bob, carol, phone, _, carols = chat
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(conversation_group(group.pk), channel)
    batcher = AckBatcher(db=DatabaseThreads(2))
    batcher.add(user_id=bob.pk, device_id=phone.pk, conversation_id=group.pk, seq=5)
    batcher.add(user_id=carol.pk, device_id=carols.pk, conversation_id=group.pk, seq=3)
    await batcher.flush()

    event = await asyncio.wait_for(layer.receive(channel), 2)
    assert event["type"] == "conv.receipts" and event["conversation"] == group.pk
    assert sorted((m["user"], m["delivered_seq"]) for m in event["receipts"]) == [(bob.pk, 5), (carol.pk, 3)]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.3)
    assert await sync_to_async(marks)(group, bob) == (5, 0)
