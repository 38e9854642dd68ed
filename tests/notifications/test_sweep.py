"""The periodic sweep: a lost enqueue never loses a notification, and after an outage old
messages are not pushed (the staleness cut-off)."""
from __future__ import annotations

import pytest

from notifications.tasks import sweep

from .conftest import age, come_online

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user, make_group):
    alice, bob = make_user("alice", display_name="Alice"), make_user("bob")
    return alice, bob, make_group(alice, [bob], title="Team")


def test_the_sweep_sends_what_a_dropped_enqueue_lost(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="lost?")
    worker.drop()  # the broker lost the burst
    age(conversation, 60)  # a minute later the sweep runs

    sweep.delay()
    worker.run()

    assert [(p["seq"], p["body"]) for p in push_service.delivered(phone)] == [(1, "Alice: lost?")]


def test_the_sweep_does_not_notify_twice(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation)
    worker.run()
    age(conversation, 60)

    sweep.delay()
    worker.run()

    assert len(push_service.delivered(phone)) == 1


def test_the_sweep_leaves_a_burst_under_way_to_its_task(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)

    sweep.delay()
    worker.run(only="parley.push.sweep")

    assert worker.names() == ["parley.push.burst"]


def test_the_sweep_skips_members_who_read_or_are_online(team, make_user, make_group, subscribe, send, read,
                                                        worker, push_service):
    alice, bob, conversation = team
    carol = make_user("carol")
    other = make_group(alice, [carol], title="Other")
    subscribe(bob), subscribe(carol)
    send(alice, conversation)
    send(alice, other)
    worker.drop()
    read(bob, conversation, 1)
    come_online(carol)
    age(conversation, 60), age(other, 60)

    sweep.delay()
    worker.run()

    assert push_service.received == []


def test_the_sweep_does_not_push_messages_older_than_the_cut_off(team, subscribe, send, worker, push_service,
                                                                 settings):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation, body="before the outage")
    worker.drop()
    age(conversation, settings.PARLEY_PUSH_STALE_AFTER_SECONDS + 60)

    sweep.delay()
    worker.run()

    assert push_service.received == []


def test_a_backlog_worked_off_after_the_cut_off_pushes_nothing(team, subscribe, send, worker, push_service,
                                                               settings):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation, body="before the outage")
    age(conversation, settings.PARLEY_PUSH_STALE_AFTER_SECONDS + 60)  # the workers were down meanwhile

    worker.run()

    assert push_service.received == []


def test_after_an_outage_only_a_fresh_message_is_pushed(team, subscribe, send, worker, push_service, settings):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="before the outage")
    age(conversation, settings.PARLEY_PUSH_STALE_AFTER_SECONDS + 60)
    send(alice, conversation, body="after")

    worker.run()

    assert [(p["seq"], p["body"], p["unread"]) for p in push_service.delivered(phone)] == [(2, "Alice: after", 2)]


def test_the_sweep_does_nothing_without_vapid_keys(team, subscribe, send, worker, push_service, settings):
    alice, bob, conversation = team
    subscribe(bob)
    settings.PARLEY_VAPID_PRIVATE_KEY = ""
    settings.PARLEY_VAPID_AUTOGENERATE = False
    send(alice, conversation)
    age(conversation, 60)

    sweep.delay()
    worker.run()

    assert push_service.received == []


# --- A worker killed mid-push (issue 16, item 8) -----------------------------------------------

def test_a_push_whose_worker_was_killed_goes_out_with_the_next_sweep_not_an_hour_later(
        team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="are you there?")
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")
    # The worker takes the push and is killed: the broker keeps the task, unacknowledged, until
    # its visibility timeout (an hour) has passed. Bob is already marked notified.
    killed = worker.take("parley.push.deliver")
    age(conversation, 120)  # two minutes later the sweep runs

    sweep.delay()
    worker.run()

    assert [(p["seq"], p["body"]) for p in push_service.delivered(phone)] == [(1, "Alice: are you there?")]
    worker.redeliver(killed)  # the hour is over: the broker hands the killed task out again
    worker.run()
    assert len(push_service.delivered(phone)) == 1


def test_the_sweep_leaves_a_push_under_way_to_its_task(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")
    age(conversation, 20)  # past the burst, within the push's lease

    sweep.delay()
    worker.run(only="parley.push.sweep")

    assert worker.names() == ["parley.push.deliver"]


def test_a_push_whose_worker_was_killed_before_an_outage_is_not_sent_after_the_cut_off(
        team, subscribe, send, worker, push_service, settings):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")
    worker.take("parley.push.deliver")
    age(conversation, settings.PARLEY_PUSH_STALE_AFTER_SECONDS + 60)

    sweep.delay()
    worker.run()

    assert push_service.received == []


def test_a_push_whose_attempts_keep_dying_with_their_workers_ends_as_a_dead_letter(
        team, subscribe, send, worker, push_service, settings):
    from notifications.models import PendingPush, PushDeadLetter

    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")
    worker.take("parley.push.deliver")
    # Every attempt so far began (and was counted) and then died with its worker.
    PendingPush.objects.update(attempts=settings.PARLEY_PUSH_MAX_RETRIES + 1)
    age(conversation, 120)

    sweep.delay()
    worker.run()

    assert push_service.received == []
    letter = PushDeadLetter.objects.get()
    assert letter.attempts == settings.PARLEY_PUSH_MAX_RETRIES + 2 and "never finished" in letter.last_error
    assert not PendingPush.objects.exists()
