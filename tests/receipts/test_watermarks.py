"""The receipt merge (receipts.watermarks): watermarks move forward only, stay ordered,
clamp to last_seq, and only an advance is broadcast."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from messaging import fanout, hooks
from messaging.conversations import do_create_group, do_remove_member
from messaging.errors import NotFound
from messaging.models import Device, Membership, User
from messaging.send import do_send_message
from receipts.models import DeviceCursor
from receipts.watermarks import do_mark_delivered, do_mark_read

pytestmark = pytest.mark.django_db

MESSAGES = 5


@pytest.fixture
def chat():
    """Alice has sent five messages to Bob, who has a phone and a laptop."""
    alice, bob = User.objects.bulk_create([User(username="alice"), User(username="bob")])
    conversation = do_create_group(creator=alice, title="pair", member_ids=[bob.pk]).conversation
    for n in range(MESSAGES):
        do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id=f"a{n}", body=f"message {n}")
    phone, laptop = Device.objects.bulk_create([Device(user=bob, name="phone"), Device(user=bob, name="laptop")])
    return conversation, bob, phone, laptop


def _marks(conversation, user) -> tuple[int, int]:
    return Membership.objects.values_list("delivered_seq", "read_seq").get(conversation=conversation, user=user)


def test_out_of_order_delivered_acks_never_lower_a_watermark_or_a_cursor(chat):
    conversation, bob, phone, laptop = chat

    do_mark_delivered(user=bob, conversation_id=conversation.pk, seq=4, device_id=phone.pk)
    late = do_mark_delivered(user=bob, conversation_id=conversation.pk, seq=2, device_id=phone.pk)
    other = do_mark_delivered(user=bob, conversation_id=conversation.pk, seq=3, device_id=laptop.pk)

    assert (late.delivered_seq, late.advanced) == (4, False)
    assert (other.delivered_seq, other.advanced) == (4, False)  # the merge over devices is max
    assert _marks(conversation, bob) == (4, 0)
    assert DeviceCursor.objects.of_device(phone.pk) == {conversation.pk: 4}
    assert DeviceCursor.objects.of_device(laptop.pk) == {conversation.pk: 3}


def test_out_of_order_reads_never_lower_a_watermark(chat):
    conversation, bob, _, _ = chat

    do_mark_read(user=bob, conversation_id=conversation.pk, seq=4)
    stale = do_mark_read(user=bob, conversation_id=conversation.pk, seq=1)

    assert (stale.delivered_seq, stale.read_seq, stale.advanced) == (4, 4, False)
    assert _marks(conversation, bob) == (4, 4)


def test_reading_raises_delivered_to_at_least_read(chat):
    conversation, bob, phone, _ = chat
    do_mark_delivered(user=bob, conversation_id=conversation.pk, seq=1, device_id=phone.pk)

    result = do_mark_read(user=bob, conversation_id=conversation.pk, seq=3)

    assert (result.delivered_seq, result.read_seq, result.advanced) == (3, 3, True)
    assert _marks(conversation, bob) == (3, 3)


def test_a_delivered_ack_below_read_leaves_both_where_they_are(chat):
    conversation, bob, phone, _ = chat
    do_mark_read(user=bob, conversation_id=conversation.pk, seq=3)

    result = do_mark_delivered(user=bob, conversation_id=conversation.pk, seq=2, device_id=phone.pk)

    assert (result.delivered_seq, result.read_seq, result.advanced) == (3, 3, False)


def test_a_seq_past_last_seq_is_clamped_to_it(chat):
    conversation, bob, phone, _ = chat

    read = do_mark_read(user=bob, conversation_id=conversation.pk, seq=MESSAGES + 100)
    delivered = do_mark_delivered(user=bob, conversation_id=conversation.pk, seq=2**62, device_id=phone.pk)

    assert (read.delivered_seq, read.read_seq) == (MESSAGES, MESSAGES)
    assert (delivered.delivered_seq, delivered.read_seq) == (MESSAGES, MESSAGES)
    assert DeviceCursor.objects.of_device(phone.pk) == {conversation.pk: MESSAGES}


@pytest.fixture
def receipt_events(monkeypatch):
    """The receipt events the merge hands to the fan-out policy (which still publishes them)."""
    events = []
    publish = fanout.receipt_advanced

    def spy(**event):
        events.append(event)
        publish(**event)

    monkeypatch.setattr(fanout, "receipt_advanced", spy)
    return events


def test_an_advance_schedules_one_receipt_event_after_commit(chat, receipt_events, django_capture_on_commit_callbacks):
    conversation, bob, _, _ = chat

    with django_capture_on_commit_callbacks() as scheduled:
        result = do_mark_read(user=bob, conversation_id=conversation.pk, seq=2)

    assert result.advanced
    # One receipt event, and the read announced to each app that reacts to reads (messaging.hooks).
    assert len(scheduled) == 1 + len(hooks.read_advanced.receivers)
    assert receipt_events == [{"conversation_id": conversation.pk, "user_id": bob.pk, "member_count": 2,
                               "delivered_seq": 2, "read_seq": 2}]


def test_a_merge_that_advances_nothing_schedules_no_event(chat, receipt_events, django_capture_on_commit_callbacks):
    conversation, bob, phone, _ = chat
    do_mark_read(user=bob, conversation_id=conversation.pk, seq=3)
    receipt_events.clear()

    with django_capture_on_commit_callbacks() as scheduled:
        results = [
            do_mark_read(user=bob, conversation_id=conversation.pk, seq=3),
            do_mark_read(user=bob, conversation_id=conversation.pk, seq=1),
            do_mark_delivered(user=bob, conversation_id=conversation.pk, seq=2, device_id=phone.pk),
        ]

    assert [r.advanced for r in results] == [False, False, False]
    assert scheduled == [] and receipt_events == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_read_racing_the_readers_removal_is_not_found_not_a_crash(chat):
    """The test holds Bob's membership row so his read waits inside the merge, then removes him."""
    conversation, bob, _, _ = chat
    alice = User.objects.get(username="alice")
    outcome, pid = [], []

    def read() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid.append(cursor.fetchone()[0])
            outcome.append(do_mark_read(user=bob, conversation_id=conversation.pk, seq=3))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            outcome.append(error)
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    with transaction.atomic():
        Membership.objects.select_for_update().get(conversation=conversation, user=bob)
        reader.start()
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            while True:
                assert time.monotonic() < deadline, "the read never waited for the membership row"
                if pid:
                    cursor.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", [pid[0]])
                    if cursor.fetchone()[0]:
                        break
                time.sleep(0.01)
        do_remove_member(actor=alice, conversation_id=conversation.pk, user_id=bob.pk)
    reader.join()

    assert isinstance(outcome[0], NotFound), outcome[0]
