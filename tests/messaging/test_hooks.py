"""The core's announcements (messaging.hooks): after commit only, each receiver on its own."""
from __future__ import annotations

import pytest
from django.db import transaction

from messaging import hooks
from messaging.send import do_send_message


@pytest.fixture
def heard(monkeypatch):
    """What a receiver connected to ``message_stored`` hears (the apps' receivers stay connected)."""
    events: list[hooks.MessageStored] = []
    monkeypatch.setattr(hooks.message_stored, "receivers", [*hooks.message_stored.receivers, events.append])
    return events


@pytest.mark.django_db(transaction=True)
def test_a_stored_message_is_announced_once_its_transaction_commits(make_user, make_group, heard):
    alice, bob = make_user(), make_user()
    group = make_group(alice, [bob])
    with transaction.atomic():
        do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="k1", body="hi")
        assert heard == []  # not before the commit
    assert [(e.conversation_id, e.seq, e.member_count) for e in heard] == [(group.pk, 1, 2)]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_send_announces_nothing(make_user, make_group, heard):
    alice, bob = make_user(), make_user()
    group = make_group(alice, [bob])
    with pytest.raises(RuntimeError), transaction.atomic():
        do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="k1", body="hi")
        raise RuntimeError("the surrounding work failed")
    assert heard == []


@pytest.mark.django_db(transaction=True)
def test_a_failing_receiver_neither_fails_the_write_nor_silences_the_others(make_user, make_group, monkeypatch,
                                                                            caplog):
    alice, bob = make_user(), make_user()
    group = make_group(alice, [bob])
    heard: list[int] = []

    def broken(event: hooks.MessageStored) -> None:
        raise ValueError("a receiver with a bug")

    monkeypatch.setattr(hooks.message_stored, "receivers", [broken, lambda event: heard.append(event.seq)])
    result = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="k1", body="hi")
    assert result.message.seq == 1 and heard == [1]
    assert "a receiver with a bug" in caplog.text


def test_connecting_a_receiver_twice_keeps_one():
    hook: hooks.Hook[int] = hooks.Hook("test")
    receiver = print
    hook.connect(receiver)
    hook.connect(receiver)
    assert hook.receivers == [receiver]


def test_every_app_that_reacts_is_connected_at_startup():
    from notifications import triggers
    from ops import observers

    assert triggers.on_message_stored in hooks.message_stored.receivers
    assert observers.on_message_stored in hooks.message_stored.receivers
    assert triggers.on_read_advanced in hooks.read_advanced.receivers
    assert triggers.on_message_removed in hooks.message_removed.receivers
