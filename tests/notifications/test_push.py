"""One coalesced notification per conversation and burst, re-checked before every attempt,
closed when read elsewhere. Pushes go to a real local push service that decrypts them."""
from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import Message
from notifications import markers

from .conftest import come_online

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user, make_group):
    alice, bob = make_user("alice", display_name="Alice"), make_user("bob")
    return alice, bob, make_group(alice, [bob], title="Team")


def test_five_messages_in_one_burst_make_one_push_carrying_the_newest(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)

    for n in ("one", "two", "three", "four", "five"):
        send(alice, conversation, body=n)

    # One burst, due a window after the first message; nothing enqueued by the sends themselves.
    (due,) = markers.pending_bursts().items()
    assert due[0] == conversation.pk and 4.0 < due[1] - time.time() <= 5.0
    assert worker.queue == []
    worker.run()
    assert push_service.delivered(phone) == [{
        "type": "message", "conversation": conversation.pk, "title": "Team", "body": "Alice: five",
        "seq": 5, "unread": 5, "url": f"/c/{conversation.pk}", "tag": f"conversation-{conversation.pk}",
    }]


def test_the_push_is_tagged_per_conversation_and_kept_by_the_push_service(team, subscribe, send, worker,
                                                                          push_service, settings):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)
    worker.run()

    (received,) = push_service.received
    assert received.headers["topic"] == f"conversation-{conversation.pk}"  # a pending older one is replaced
    assert received.headers["urgency"] == "high"
    assert received.headers["ttl"] == str(settings.PARLEY_PUSH_TTL_SECONDS)


def test_every_device_gets_the_push_encrypted_for_its_own_keys(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone, laptop = subscribe(bob, "phone"), subscribe(bob, "laptop")
    send(alice, conversation, body="hi")
    worker.run()

    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: hi"]
    assert [p["body"] for p in push_service.delivered(laptop)] == ["Alice: hi"]


def test_a_mention_among_the_unread_is_what_the_push_shows(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="@bob can you review?")
    send(alice, conversation, body="also, lunch")
    worker.run()
    assert push_service.delivered(phone) == [{
        "type": "message", "conversation": conversation.pk, "title": "Alice mentioned you in Team",
        "body": "@bob can you review?", "seq": 1, "unread": 2, "url": f"/c/{conversation.pk}",
        "tag": f"conversation-{conversation.pk}", "mention": True,
    }]


def test_a_deleted_mention_is_not_pushed(team, subscribe, send, worker, push_service):
    from messaging.changes import do_delete_message

    alice, bob, conversation = team
    phone = subscribe(bob)
    mention = send(alice, conversation, body="@bob secret")
    send(alice, conversation, body="later")
    do_delete_message(actor=alice, message_id=mention.pk)
    worker.run()
    assert [(p["title"], p["body"]) for p in push_service.delivered(phone)] == [("Team", "Alice: later")]


def test_a_busy_conversation_asks_the_cache_once_per_burst_from_one_process(team, subscribe, send, worker,
                                                                           push_service, monkeypatch):
    from notifications import markers

    alice, bob, conversation = team
    subscribe(bob)
    asked = []
    claim = markers._claim
    monkeypatch.setattr(markers, "_claim", lambda *a, **k: asked.append(a[0]) or claim(*a, **k))
    for n in range(5):
        send(alice, conversation, body=f"m{n}")
    assert len(asked) == 1  # the burst this process opened is open until its task can run
    worker.run()  # the burst ran (here, in this process): the next send opens the next one
    send(alice, conversation, body="after")
    assert len(asked) == 2 and worker.names() == ["parley.push.burst"]


def test_a_process_that_finds_anothers_burst_open_asks_no_more_until_it_can_close(
        team, subscribe, send, worker, push_service, monkeypatch):
    """Gateways share a busy conversation: the one that did not open its burst learns from the
    cache when it opened, instead of asking again on every send."""
    from notifications import markers

    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation, body="opens the burst")
    markers._open_until.clear()  # from here on, this process is another one: it did not open it
    asked = []
    claim = markers._claim
    monkeypatch.setattr(markers, "_claim", lambda *a, **k: asked.append(claim(*a, **k)) or asked[-1])
    for n in range(4):
        send(bob, conversation, body=f"reply {n}")
    assert [opened for opened, _ in asked] == [False]  # asked once, found it open, and knows until when
    assert worker.names() == ["parley.push.burst"]  # the one burst, not a second
    worker.run()
    send(bob, conversation, body="next burst")
    assert [opened for opened, _ in asked] == [False, True]


def test_the_beat_starts_a_burst_once_its_window_has_passed_and_only_once(team, subscribe, send, worker,
                                                                         push_service, settings):
    from notifications.tasks import due

    assert settings.CELERY_BEAT_SCHEDULE["parley.push.due"]["task"] == due.name
    assert settings.CELERY_BEAT_SCHEDULE["parley.push.due"]["schedule"] == settings.PARLEY_PUSH_DUE_POLL_SECONDS
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="hi")
    opened = time.time()
    assert due(now=opened + 3.0) == 0 and worker.queue == []  # still inside the window
    assert due(now=opened + 5.5) == 1  # past it: started...
    assert due(now=opened + 5.5) == 0  # ...once, whichever poll comes next
    assert markers.pending_bursts() == {}
    assert [(q.name, q.args) for q in worker.queue] == [("parley.push.burst", (conversation.pk,))]
    worker.run()
    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: hi"]


def test_without_a_worker_the_embedded_defaults_start_the_burst_at_once(team, subscribe, send, worker,
                                                                      push_service, settings):
    """Tasks run in-process (CELERY_TASK_ALWAYS_EAGER, `make run`): no beat will come, so the
    message's burst is started by the send itself."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation, body="hi")
    assert [(q.name, q.args) for q in worker.queue] == [("parley.push.burst", (conversation.pk,))]


def test_a_message_after_the_burst_starts_the_next_burst(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="first")
    worker.run()
    send(alice, conversation, body="second")
    send(alice, conversation, body="third")

    assert worker.names() == ["parley.push.burst"]
    worker.run()
    assert [(p["seq"], p["body"], p["unread"]) for p in push_service.delivered(phone)] == [
        (1, "Alice: first", 1), (3, "Alice: third", 3)]


def test_a_direct_message_is_titled_with_the_sender_and_its_preview_is_truncated(
        make_user, subscribe, send, worker, push_service, settings):
    from messaging.conversations import do_get_or_create_direct

    settings.PARLEY_PUSH_PREVIEW_CHARS = 20
    alice, bob = make_user("alice", display_name="Alice"), make_user("bob")
    direct = do_get_or_create_direct(creator=alice, other_user_id=bob.pk).conversation
    phone = subscribe(bob)
    send(alice, direct, body="a long message that goes\non and on and on")
    worker.run()

    (payload,) = push_service.delivered(phone)
    assert (payload["title"], payload["body"]) == ("Alice", "a long message that…")


def test_a_message_of_files_alone_is_pushed_with_the_files_name(team, subscribe, worker, push_service,
                                                                 django_capture_on_commit_callbacks):
    from messaging.attachments import do_upload
    from messaging.send import do_send_message
    from tests import files

    alice, bob, conversation = team
    phone = subscribe(bob)
    photo = do_upload(uploader=alice, file=files.upload(files.png(), "beach.png"), conversation_id=conversation.pk)
    with django_capture_on_commit_callbacks(execute=True):
        do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="f1", body="",
                        attachments=[photo.pk])
    worker.run()
    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: \U0001F4CE beach.png"]


def test_the_sender_is_not_notified_of_their_own_message(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(alice)
    send(alice, conversation)
    worker.run()

    assert push_service.received == []


def test_a_member_who_read_before_the_burst_gets_no_push(team, subscribe, send, read, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)
    read(bob, conversation, 1)
    worker.run()

    assert push_service.received == []


def test_a_read_between_the_claim_and_the_attempt_stops_the_push(team, subscribe, send, read, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")
    assert worker.names() == ["parley.push.deliver"]

    read(bob, conversation, 1)
    worker.run()
    assert push_service.received == []


def test_a_removed_message_is_never_pushed_and_its_body_never_sent(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="fine")
    secret = send(alice, conversation, body="secret")
    # Moderation tombstones a message in place (the text stays as evidence for moderators).
    Message.objects.filter(pk=secret.pk).update(state=Message.State.REMOVED)
    worker.run()

    (payload,) = push_service.delivered(phone)
    assert (payload["seq"], payload["body"]) == (1, "Alice: fine")


def test_a_burst_of_only_removed_messages_sends_nothing(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    secret = send(alice, conversation, body="secret")
    Message.objects.filter(pk=secret.pk).update(state=Message.State.REMOVED)
    worker.run()

    assert push_service.received == []


def test_a_removal_between_the_claim_and_the_attempt_stops_the_push(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    secret = send(alice, conversation, body="secret")
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")

    Message.objects.filter(pk=secret.pk).update(state=Message.State.REMOVED)
    worker.run()
    assert push_service.received == []


def test_a_member_with_a_device_online_gets_no_push(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    come_online(bob)
    send(alice, conversation)
    worker.run()

    assert push_service.received == []


def test_a_member_who_comes_online_before_the_attempt_gets_no_push(team, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")

    come_online(bob)
    worker.run()
    assert push_service.received == []


def test_a_redelivered_task_does_not_notify_twice(team, subscribe, send, worker, push_service):
    from notifications.tasks import burst, notify_member

    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation)
    worker.run()
    # acks_late: a worker killed after its work hands the same tasks out again.
    burst.delay(conversation.pk)
    notify_member.delay(conversation.pk, bob.pk)
    worker.run()

    assert len(push_service.delivered(phone)) == 1


def test_reading_elsewhere_closes_the_notification(team, subscribe, send, read, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="one")
    send(alice, conversation, body="two")
    worker.run()

    read(bob, conversation, 1)
    assert worker.queue == []  # "two" is still unread: the notification stays
    read(bob, conversation, 2)
    assert worker.names() == ["parley.push.close"]
    worker.run()

    message, close = push_service.delivered(phone)
    assert close == {"type": "close", "conversation": conversation.pk, "seq": 2, "unread": 0,
                     "url": f"/c/{conversation.pk}", "tag": message["tag"]}
    assert push_service.received[-1].headers["topic"] == message["tag"]


def test_reading_sends_no_close_when_nothing_was_pushed(team, subscribe, send, read, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    send(alice, conversation)
    read(bob, conversation, 1)
    worker.run()

    assert push_service.received == []
    assert worker.queue == []


def test_a_close_is_not_sent_over_a_newer_notification(team, subscribe, send, read, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    send(alice, conversation, body="one")
    worker.run()
    read(bob, conversation, 1)
    assert worker.names() == ["parley.push.close"]
    send(alice, conversation, body="two")
    worker.run(only="parley.push.burst")
    worker.run(only="parley.push.notify_member")
    worker.run()  # the close (queued first) finds "two" notified and unread: it would hide it

    assert [p["type"] for p in push_service.delivered(phone)] == ["message", "message"]


def test_enabling_push_adds_no_query_to_the_send_path(team, subscribe, send, worker, settings):
    alice, bob, conversation = team
    subscribe(bob)

    def queries_of_a_send() -> int:
        with CaptureQueriesContext(connection) as queries:
            send(alice, conversation)
        return len(queries)

    key, settings.PARLEY_VAPID_PRIVATE_KEY = settings.PARLEY_VAPID_PRIVATE_KEY, ""
    settings.PARLEY_VAPID_AUTOGENERATE = False
    without_push = queries_of_a_send()
    assert worker.queue == []
    settings.PARLEY_VAPID_PRIVATE_KEY = key
    with_push = queries_of_a_send()

    assert worker.names() == ["parley.push.burst"]
    assert with_push == without_push


@pytest.fixture
def remove(django_capture_on_commit_callbacks):
    """Tombstone a message as moderation does: a ``removed`` change, announced after commit."""
    from django.db import transaction

    from messaging.changes import record_change, withdraw_text
    from messaging.selectors import MESSAGE_JOINS

    def remove_(message):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            locked = (Message.objects.select_for_update(of=("self",)).select_related(*MESSAGE_JOINS)
                      .get(pk=message.pk))
            record_change(locked, kind="removed", actor=None,
                          write=lambda change: {**withdraw_text(locked), "state": Message.State.REMOVED})

    return remove_


def test_removing_the_message_a_notification_shows_withdraws_it(team, subscribe, send, remove, read, worker,
                                                                 push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    secret = send(alice, conversation, body="secret")
    worker.run()

    remove(secret)
    worker.run()
    read(bob, conversation, 1)

    shown, withdrawn = push_service.delivered(phone)
    assert shown["body"] == "Alice: secret"
    assert (withdrawn["type"], withdrawn["tag"]) == ("close", shown["tag"])
    assert worker.queue == []  # the read has nothing left to close


def test_removing_an_older_message_leaves_a_newer_notification_alone(team, subscribe, send, remove, worker,
                                                                     push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    old = send(alice, conversation, body="old")
    send(alice, conversation, body="new")
    worker.run()

    remove(old)
    worker.run()

    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: new"]


def test_removing_a_message_nobody_was_shown_sends_nothing(team, subscribe, send, remove, worker, push_service):
    alice, bob, conversation = team
    subscribe(bob)
    message = send(alice, conversation)
    remove(message)
    worker.run()

    assert push_service.received == []
