"""A property test of the write path and the receipt merge together (issue 2, "Done when").

Hypothesis interleaves sends, retries, reads and delivered acks from several users and
devices, with seqs past ``last_seq`` and stale ones, and after every step checks the store
against a small model and against the contract's invariants:

* seqs are gap-free: exactly 1..last_seq;
* ``read_seq <= delivered_seq <= last_seq`` for every member, and watermarks never decrease;
* ``unread`` equals a brute-force count of later messages not sent by the member;
* a device's ack cursor never decreases.

Runs on SQLite and on PostgreSQL (DATABASE_URL); each example has its own users and conversation.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from messaging.conversations import do_create_group
from messaging.errors import Conflict
from messaging.models import Device, Membership, Message, User
from messaging.payloads import conversation_payload
from messaging.send import do_send_message
from receipts.models import DeviceCursor
from receipts.watermarks import do_mark_delivered, do_mark_read

USERS, DEVICES_PER_USER = 3, 2
_examples = itertools.count()

users = st.integers(0, USERS - 1)
devices = st.integers(0, DEVICES_PER_USER - 1)
bodies = st.sampled_from(["hi", "hello", "on my way", "ok"])
# Mostly around the conversation's length (so both stale and past-the-end seqs occur), sometimes huge.
seqs = st.one_of(st.integers(0, 40), st.just(2**62))


class SendsAndReceipts(RuleBasedStateMachine):
    @initialize()
    def start_a_conversation(self) -> None:
        example = next(_examples)
        self.users = User.objects.bulk_create([User(username=f"prop{example}-{i}") for i in range(USERS)])
        self.conversation = do_create_group(creator=self.users[0], title="property",
                                            member_ids=[u.pk for u in self.users[1:]]).conversation
        self.devices = [Device.objects.bulk_create([Device(user=user, name=f"d{d}") for d in range(DEVICES_PER_USER)])
                        for user in self.users]
        self.keys = itertools.count()
        # The model: what the store must say after each step.
        self.last_seq = 0
        self.sent: dict[tuple[int, str], tuple[int, int, str]] = {}  # (user, key) -> (id, seq, body)
        self.marks = {user.pk: (0, 0) for user in self.users}  # user -> (delivered, read)
        self.cursors = {device.pk: 0 for row in self.devices for device in row}
        self.seen_marks = dict(self.marks)
        self.seen_cursors = dict(self.cursors)

    def _raise_marks(self, user: User, *, delivered: int, read: int) -> bool:
        old = self.marks[user.pk]
        new = (max(old[0], delivered, read), max(old[1], read))
        self.marks[user.pk] = new
        return new != old

    # --- Steps ----------------------------------------------------------------------------

    @rule(who=users, body=bodies)
    def send(self, who: int, body: str) -> None:
        user, key = self.users[who], f"key-{next(self.keys)}"
        result = do_send_message(sender=user, conversation_id=self.conversation.pk, client_msg_id=key, body=body)
        self.last_seq += 1
        assert (result.message.seq, result.duplicate) == (self.last_seq, False)
        self.sent[(who, key)] = (result.message.pk, result.message.seq, body)
        self._raise_marks(user, delivered=self.last_seq, read=self.last_seq)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        who, key = data.draw(st.sampled_from(sorted(self.sent)))
        message_id, seq, body = self.sent[(who, key)]
        result = do_send_message(sender=self.users[who], conversation_id=self.conversation.pk,
                                 client_msg_id=key, body=body)
        assert (result.message.pk, result.message.seq, result.duplicate) == (message_id, seq, True)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def retry_with_another_body(self, data: st.DataObject) -> None:
        who, key = data.draw(st.sampled_from(sorted(self.sent)))
        with pytest.raises(Conflict):
            do_send_message(sender=self.users[who], conversation_id=self.conversation.pk,
                            client_msg_id=key, body=self.sent[(who, key)][2] + " (edited)")

    @rule(who=users, seq=seqs)
    def read(self, who: int, seq: int) -> None:
        user = self.users[who]
        result = do_mark_read(user=user, conversation_id=self.conversation.pk, seq=seq)
        target = min(seq, self.last_seq)
        advanced = self._raise_marks(user, delivered=target, read=target)
        assert (result.delivered_seq, result.read_seq, result.advanced) == (*self.marks[user.pk], advanced)

    @rule(who=users, device=devices, seq=seqs)
    def delivered(self, who: int, device: int, seq: int) -> None:
        user, device = self.users[who], self.devices[who][device]
        result = do_mark_delivered(user=user, conversation_id=self.conversation.pk, seq=seq, device_id=device.pk)
        target = min(seq, self.last_seq)
        self.cursors[device.pk] = max(self.cursors[device.pk], target)
        advanced = self._raise_marks(user, delivered=target, read=0)
        assert (result.delivered_seq, result.read_seq, result.advanced) == (*self.marks[user.pk], advanced)

    @rule(who=users, device=devices, seq=seqs)
    def gateway_flushes_an_ack_cursor(self, who: int, device: int, seq: int) -> None:
        # A gateway acks only what it delivered, so never past last_seq; reordered flushes are stale.
        device = self.devices[who][device]
        seq = min(seq, self.last_seq)
        DeviceCursor.objects.raise_cursors({(self.conversation.pk, device.pk): seq})
        self.cursors[device.pk] = max(self.cursors[device.pk], seq)

    # --- Invariants, checked after every step -----------------------------------------------

    @invariant()
    def the_store_keeps_the_invariants(self) -> None:
        messages = list(Message.objects.filter(conversation=self.conversation)
                        .order_by("seq").values_list("seq", "sender_id"))
        assert [seq for seq, _ in messages] == list(range(1, self.last_seq + 1))  # gap-free

        for membership in Membership.objects.select_related("conversation").filter(conversation=self.conversation):
            user_id, marks = membership.user_id, (membership.delivered_seq, membership.read_seq)
            assert membership.conversation.last_seq == self.last_seq
            assert 0 <= membership.read_seq <= membership.delivered_seq <= self.last_seq
            seen = self.seen_marks[user_id]
            assert marks[0] >= seen[0] and marks[1] >= seen[1], "a watermark went down"
            assert marks == self.marks[user_id]
            self.seen_marks[user_id] = marks

            unread = conversation_payload(membership.conversation, membership)["me"]["unread"]
            assert unread == sum(1 for seq, sender in messages if seq > membership.read_seq and sender != user_id)

        stored = dict(DeviceCursor.objects.filter(conversation=self.conversation).values_list("device_id", "ack_seq"))
        for device_id, seen in self.seen_cursors.items():
            cursor = stored.get(device_id, 0)
            assert cursor >= seen, "an ack cursor went down"
            assert cursor == self.cursors[device_id]
            self.seen_cursors[device_id] = cursor


@pytest.mark.django_db
def test_sends_retries_reads_and_acks_in_any_order_keep_the_receipt_invariants():
    run_state_machine_as_test(
        SendsAndReceipts, settings=settings(max_examples=60, stateful_step_count=30, deadline=None),
    )
