"""A large conversation's new title or topic reaches every member from a bulk task, a page at
a time, and never from the request (messaging.conversations.announce_updated, messaging.tasks)."""
from __future__ import annotations

import pytest

from messaging import layer, tasks
from messaging.conversations import do_update_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    events: list[tuple[str, dict]] = []
    monkeypatch.setattr(layer, "publish", lambda group, event: events.append((group, event)))
    return events


def test_a_large_conversation_is_renamed_for_every_member_by_the_bulk_task(
        make_user, make_group, settings, published, monkeypatch, django_capture_on_commit_callbacks):
    settings.PARLEY_LARGE_CHANNEL_THRESHOLD = 3
    owner, *others = (make_user() for _ in range(4))
    channel = make_group(owner, others, title="big", kind="channel", public=True)
    enqueued: list[int] = []
    monkeypatch.setattr(tasks.announce_conversation_updated, "delay", enqueued.append)
    monkeypatch.setattr(tasks, "_ANNOUNCE_PAGE", 2)
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        do_update_conversation(actor=owner, conversation_id=channel.pk, topic="Big news")
    assert enqueued == [channel.pk] and published == []  # the request publishes nothing itself

    assert tasks.announce_conversation_updated(channel.pk) == 4  # in two pages of two
    told = {group: event for group, event in published}
    assert set(told) == {f"user.{user.pk}" for user in (owner, *others)}
    assert {event["type"] for event in told.values()} == {"user.updated"}
    assert {event["conversation"]["topic"] for event in told.values()} == {"Big news"}
    assert told[f"user.{owner.pk}"]["conversation"]["me"]["role"] == "owner"


def test_a_small_conversation_is_told_at_once(make_user, make_group, published, django_capture_on_commit_callbacks):
    owner, member = make_user(), make_user()
    group = make_group(owner, [member], title="small")
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        do_update_conversation(actor=owner, conversation_id=group.pk, title="renamed")
    assert sorted(group for group, _ in published) == sorted([f"user.{owner.pk}", f"user.{member.pk}"])
