"""messaging.selectors.messages_after: on PostgreSQL a prebuilt statement, which must load
exactly what the ORM's query with MESSAGE_JOINS loads (every page, fill and hello reads it)."""
from __future__ import annotations

import pytest

from messaging.changes import do_delete_message, do_edit_message
from messaging.models import Message, User
from messaging.payloads import message_payload
from messaging.reactions import do_add_reaction
from messaging.selectors import MESSAGE_JOINS, messages_after
from messaging.send import do_send_message

pytestmark = pytest.mark.django_db


def orm_page(conversation_id: int, after_seq: int, limit: int) -> tuple[list[Message], bool]:
    messages = list(Message.objects.filter(conversation_id=conversation_id, seq__gt=after_seq)
                    .select_related(*MESSAGE_JOINS).order_by("seq")[: limit + 1])
    return messages[:limit], len(messages) > limit


def loaded(instance: Message | User | None) -> dict | None:
    if instance is None:
        return None
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


@pytest.fixture
def varied_conversation(make_user, make_group):
    """Plain messages, a mention, replies (one to a message since deleted), an edit and a reaction."""
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])

    def send(sender, body, **kw):
        return do_send_message(sender=sender, conversation_id=group.pk, client_msg_id=f"k{Message.objects.count()}",
                               body=body, **kw).message

    first = send(alice, "hello @bob")
    send(bob, "hi", reply_to=first.pk)
    doomed = send(alice, "oops")
    send(bob, "what was that?", reply_to=doomed.pk)
    do_delete_message(actor=alice, message_id=doomed.pk)
    do_edit_message(editor=alice, message_id=first.pk, body="hello again @bob")
    do_add_reaction(user=bob, message_id=first.pk, emoji="👍")
    for i in range(3):
        send(alice, f"more {i}")
    return group


@pytest.mark.parametrize("after_seq, limit", [(0, 3), (3, 3), (0, 200), (6, 200), (7, 1), (99, 5)])
def test_a_page_loads_the_messages_senders_replies_and_json_fields_the_orm_loads(
        varied_conversation, after_seq, limit):
    page, has_more = messages_after(varied_conversation.pk, after_seq, limit)
    expected, expected_more = orm_page(varied_conversation.pk, after_seq, limit)
    assert [m.seq for m in page] == [m.seq for m in expected]
    assert has_more == expected_more
    for message, reference in zip(page, expected):
        assert loaded(message) == loaded(reference)
        assert loaded(message.sender) == loaded(reference.sender)
        assert loaded(message.reply_to) == loaded(reference.reply_to)
        if reference.reply_to is not None:
            assert loaded(message.reply_to.sender) == loaded(reference.reply_to.sender)
        assert message_payload(message) == message_payload(reference)
        assert not message._state.adding and message._state.db == reference._state.db


def test_reading_a_page_costs_one_query_with_its_joins_loaded(varied_conversation, django_assert_num_queries):
    with django_assert_num_queries(1):
        page, _ = messages_after(varied_conversation.pk, 0, 200)
        [message_payload(message) for message in page]  # senders and replies already loaded
    assert isinstance(page[0].reactions, list) and isinstance(page[0].mention_ids, list)
