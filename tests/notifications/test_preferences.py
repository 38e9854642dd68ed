"""Per-conversation notification settings on the offline path (issue 13 item 4): ``notify``
(all / mentions / none) and ``muted_until`` change what the local push service receives, and
they are re-checked when each push is decided and again before each attempt. VAPID keys are
generated once and stored when none are configured, and sign pushes a push service accepts."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.conversations import do_update_my_settings
from notifications import markers, vapid
from notifications.models import NotificationState, VapidKeyPair
from notifications.tasks import sweep

from .conftest import SUBJECT, age
from .push_service import LocalPushService

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user, make_group):
    alice, bob = make_user("alice", display_name="Alice"), make_user("bob")
    return alice, bob, make_group(alice, [bob], title="Team")


def settle(user, conversation, **changes):
    do_update_my_settings(user=user, conversation_id=conversation.pk, **changes)


def test_all_is_the_default_and_pushes_every_burst(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="hello")
    worker.run()
    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: hello"]


def test_none_pushes_nothing_now_or_at_the_sweep(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    settle(bob, conversation, notify="none")
    send(alice, conversation, body="@bob even a mention")
    worker.run()
    age(conversation, 60)
    sweep.delay()
    worker.run()
    assert push_service.received == []


def test_mentions_pushes_only_a_burst_that_mentions_me(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    settle(bob, conversation, notify="mentions")
    send(alice, conversation, body="chatter")
    worker.run()
    assert push_service.received == []
    # Decided: the sweep does not come back to the chatter.
    assert NotificationState.objects.get(conversation=conversation, user=bob).notified_seq == 1

    send(alice, conversation, body="more chatter")
    send(alice, conversation, body="@bob please look")
    send(alice, conversation, body="and this after it")
    worker.run()
    assert push_service.delivered(phone) == [{
        "type": "message", "conversation": conversation.pk, "title": "Alice mentioned you in Team",
        "body": "@bob please look", "seq": 3, "unread": 4, "url": f"/c/{conversation.pk}",
        "tag": f"conversation-{conversation.pk}", "mention": True,
    }]


def test_muted_pushes_nothing_not_even_a_mention_and_unmuting_does_not_replay_it(
        team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    settle(bob, conversation, muted_until=timezone.now() + timedelta(hours=1))
    send(alice, conversation, body="@bob while muted")
    worker.run()
    age(conversation, 60)
    sweep.delay()
    worker.run()
    assert push_service.received == []
    assert NotificationState.objects.get(conversation=conversation, user=bob).notified_seq == 1  # decided

    settle(bob, conversation, muted_until=None)
    send(alice, conversation, body="after the mute")
    worker.run()
    assert [(p["seq"], p["body"]) for p in push_service.delivered(phone)] == [(2, "Alice: after the mute")]


def test_a_mute_that_ran_out_mutes_nothing(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    settle(bob, conversation, muted_until=timezone.now() - timedelta(minutes=1))
    send(alice, conversation, body="hi")
    worker.run()
    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: hi"]


def test_muting_between_the_claim_and_the_attempt_stops_the_push(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")
    assert worker.names() == ["parley.push.deliver"]
    settle(bob, conversation, muted_until=timezone.now() + timedelta(hours=8))
    worker.run()
    assert push_service.received == []


def test_mentions_only_set_between_the_claim_and_the_attempt_stops_a_push_without_one(
        team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation, body="no mention here")
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")
    settle(bob, conversation, notify="mentions")
    worker.run()
    assert push_service.received == []


def test_another_members_settings_are_theirs_alone(make_user, make_group, subscribe, send, worker, push_service):
    alice, bob, carol = make_user("alice", display_name="Alice"), make_user("bob"), make_user("carol")
    conversation = make_group(alice, [bob, carol], title="Team")
    bob_phone, carol_phone = subscribe(bob), subscribe(carol)
    settle(bob, conversation, notify="none")
    send(alice, conversation, body="hi all")
    worker.run()
    assert (push_service.delivered(bob_phone), [p["body"] for p in push_service.delivered(carol_phone)]) == (
        [], ["Alice: hi all"])


# --- VAPID keys generated on the embedded defaults -----------------------------------------------

@pytest.fixture
def no_configured_keys(settings):
    settings.PARLEY_VAPID_PUBLIC_KEY = ""
    settings.PARLEY_VAPID_PRIVATE_KEY = ""
    settings.PARLEY_VAPID_AUTOGENERATE = True
    vapid.forget_stored()
    yield
    vapid.forget_stored()


def test_without_configured_keys_a_pair_is_generated_once_and_stored(no_configured_keys):
    assert not VapidKeyPair.objects.exists()
    first = vapid.current()
    assert first is not None and markers.enabled()
    (row,) = VapidKeyPair.objects.all()
    assert (row.public_key, row.private_key) == (first.public, first.private)
    assert vapid.public_key_of(first.private) == first.public
    vapid.forget_stored()  # another process, or a restart
    assert vapid.current() == first and VapidKeyPair.objects.count() == 1


def test_the_generated_pair_signs_pushes_the_push_service_accepts_and_browsers_get_its_key(
        no_configured_keys, team, api, make_device, send, worker, client, settings):
    alice, bob, conversation = team
    keys = vapid.current()
    client.force_login(bob)
    page = client.get("/").content.decode()
    assert f'"vapid_public_key": "{keys.public}"' in page

    with LocalPushService(vapid_public_key=keys.public, vapid_subject=SUBJECT) as service:
        settings.PARLEY_PUSH_INSECURE_TEST_ORIGINS = [service.origin]
        subscription = service.subscribe()
        device = make_device(bob)
        api.as_user(bob).post(f"/api/v1/devices/{device.pk}/push-subscription", subscription.as_json(),
                              format="json")
        send(alice, conversation, body="signed by the generated key")
        worker.run()
    assert service.attempts() == [201]
    assert [p["body"] for p in service.delivered(subscription)] == ["Alice: signed by the generated key"]


def test_no_keys_and_no_autogeneration_turns_pushes_off(no_configured_keys, settings):
    settings.PARLEY_VAPID_AUTOGENERATE = False
    assert vapid.current() is None and not markers.enabled() and vapid.public_key() == ""
    assert not VapidKeyPair.objects.exists()


def test_configured_keys_win_and_a_missing_public_key_is_derived(settings, vapid_keys):
    public, private = vapid_keys
    settings.PARLEY_VAPID_AUTOGENERATE = True
    settings.PARLEY_VAPID_PUBLIC_KEY = ""
    assert vapid.current() == vapid.VapidKeys(public=public, private=private)
    assert not VapidKeyPair.objects.exists()


def test_a_public_key_without_its_private_key_generates_nothing(no_configured_keys, settings, vapid_keys):
    settings.PARLEY_VAPID_PUBLIC_KEY = vapid_keys[0]
    assert vapid.current() is None and vapid.public_key() == vapid_keys[0]
    assert not VapidKeyPair.objects.exists()
