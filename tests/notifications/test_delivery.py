"""When the push service fails: retries with growing, jittered backoff; 404/410 forgets the
subscription; after the last retry a dead letter the admin can retry or discard."""
from __future__ import annotations

import pytest
from django.urls import reverse

from notifications.delivery import retry_countdown
from notifications.models import PushDeadLetter, PushSubscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user, make_group):
    alice, bob = make_user("alice", display_name="Alice"), make_user("bob")
    return alice, bob, make_group(alice, [bob], title="Team")


def test_a_failing_push_is_retried_with_growing_jittered_backoff_until_it_goes_through(
        team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    push_service.respond_with(500, times=2)
    send(alice, conversation, body="hi")
    worker.run()

    assert push_service.attempts() == [500, 500, 201]
    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: hi"]
    first, second = worker.retry_countdowns
    # base 1 s: the n-th retry waits between half and all of 2**n seconds.
    assert 0.5 <= first <= 1.0 <= second <= 2.0
    assert PushDeadLetter.objects.count() == 0


def test_backoff_doubles_per_retry_with_jitter_and_a_cap(settings):
    settings.PARLEY_PUSH_BACKOFF_BASE_SECONDS = 2.0
    settings.PARLEY_PUSH_BACKOFF_MAX_SECONDS = 60.0
    for retries, (low, high) in enumerate([(1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (30, 60), (30, 60)]):
        waits = [retry_countdown(retries) for _ in range(200)]
        assert low <= min(waits) and max(waits) <= high
        assert max(waits) - min(waits) > (high - low) / 2  # spread, not one fixed wait


def test_a_retry_after_from_the_push_service_is_honoured_up_to_the_cap(settings):
    settings.PARLEY_PUSH_BACKOFF_BASE_SECONDS = 1.0
    settings.PARLEY_PUSH_BACKOFF_MAX_SECONDS = 60.0
    assert retry_countdown(0, retry_after=30) == 30
    assert retry_countdown(0, retry_after=3600) == 60


def test_a_gone_subscription_is_deleted_and_not_retried(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    push_service.respond_with(410)
    send(alice, conversation)
    worker.run()

    assert push_service.attempts() == [410]
    assert not PushSubscription.objects.filter(device__user=bob).exists()
    assert worker.retry_countdowns == [] and PushDeadLetter.objects.count() == 0


def test_an_unknown_endpoint_is_deleted_like_a_gone_one(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    push_service.respond_with(404)
    send(alice, conversation)
    worker.run()

    assert not PushSubscription.objects.filter(device__user=bob).exists()


def test_after_the_last_retry_the_push_becomes_a_dead_letter(team, subscribe, send, worker, push_service, settings):
    alice, bob, conversation = team
    subscribe(bob)
    push_service.respond_with(500, times=settings.PARLEY_PUSH_MAX_RETRIES + 1)
    send(alice, conversation, body="do not keep this text")
    worker.run()

    assert push_service.attempts() == [500] * 3
    (letter,) = PushDeadLetter.objects.all()
    assert (letter.kind, letter.user, letter.conversation_id, letter.attempts) == ("message", bob, conversation.pk, 3)
    assert letter.device.user == bob and letter.subscription is not None
    assert "500" in letter.last_error
    assert letter.payload["seq"] == 1 and "body" not in letter.payload


def test_a_refusal_that_retrying_cannot_fix_is_a_dead_letter_at_once(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    push_service.respond_with(403)  # e.g. the VAPID keys changed
    send(alice, conversation)
    worker.run()

    assert push_service.attempts() == [403]
    assert PushDeadLetter.objects.get().attempts == 1


@pytest.fixture
def operator(admin_client):
    def act(action, letters):
        return admin_client.post(reverse("admin:notifications_pushdeadletter_changelist"),
                                 {"action": action, "_selected_action": [letter.pk for letter in letters]},
                                 follow=True)

    return act


def test_the_admin_retries_a_dead_letter_and_it_goes_through(
        team, subscribe, send, worker, push_service, operator, django_capture_on_commit_callbacks, admin_client):
    alice, bob, conversation = team
    phone = subscribe(bob)
    push_service.respond_with(500, times=3)
    send(alice, conversation, body="hi")
    worker.run()
    letter = PushDeadLetter.objects.get()
    page = admin_client.get(reverse("admin:notifications_pushdeadletter_changelist"))
    assert b"push service answered 500" in page.content

    with django_capture_on_commit_callbacks(execute=True):
        response = operator("retry", [letter])
    assert b"1 push(es) sent for another try" in response.content
    worker.run()

    assert push_service.attempts() == [500, 500, 500, 201]
    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: hi"]
    assert PushDeadLetter.objects.count() == 0


def test_a_retried_dead_letter_still_respects_a_read_since(
        team, subscribe, send, read, worker, push_service, operator, django_capture_on_commit_callbacks):
    alice, bob, conversation = team
    subscribe(bob)
    push_service.respond_with(500, times=3)
    send(alice, conversation)
    worker.run()
    read(bob, conversation, 1)

    with django_capture_on_commit_callbacks(execute=True):
        operator("retry", list(PushDeadLetter.objects.all()))
    worker.run()

    assert push_service.attempts() == [500, 500, 500]


def test_the_admin_discards_a_dead_letter(team, subscribe, send, worker, push_service, operator):
    alice, bob, conversation = team
    subscribe(bob)
    push_service.respond_with(500, times=3)
    send(alice, conversation)
    worker.run()

    response = operator("discard", list(PushDeadLetter.objects.all()))

    assert b"1 push(es) discarded" in response.content
    assert PushDeadLetter.objects.count() == 0 and worker.queue == []


def test_a_dead_letter_whose_subscription_is_gone_cannot_be_retried(team, subscribe, send, worker, push_service,
                                                                     operator, django_capture_on_commit_callbacks):
    alice, bob, conversation = team
    subscribe(bob)
    push_service.respond_with(500, times=3)
    send(alice, conversation)
    worker.run()
    PushSubscription.objects.filter(device__user=bob).delete()  # the device was removed meanwhile

    with django_capture_on_commit_callbacks(execute=True):
        response = operator("retry", list(PushDeadLetter.objects.all()))

    assert b"1 push(es) discarded: their subscription is gone" in response.content
    assert PushDeadLetter.objects.count() == 0 and worker.queue == []
