"""Moderation use cases (messaging.moderation): decisions, tombstones, the audit trail, limits."""
from __future__ import annotations

import importlib
import threading

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from messaging import moderation
from messaging.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited
from messaging.models import Flag, Message, ModerationDecision
from messaging.moderation import (
    do_flag_message,
    do_resolve_flag,
    do_set_slow_mode,
    do_set_suspended,
    flag_payloads,
    flag_queue,
)
from messaging.replay import removals_to_replay
from messaging.send import do_send_message
from tests.messaging.test_write_path import QUERIES_PER_SEND

SECRET = "the text only moderators may read again"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()  # slow-mode counters
    yield
    cache.clear()


@pytest.fixture
def flagged(make_user, make_group, make_moderator):
    """A group of three, a message of the sender's flagged by both others, and a moderator."""
    sender, first, second = make_user(), make_user(), make_user()
    group = make_group(sender, [first, second])
    message = do_send_message(sender=sender, conversation_id=group.pk, client_msg_id="m", body=SECRET).message
    flags = [do_flag_message(reporter=r, message_id=message.pk, reason="abuse") for r in (first, second)]
    return {"sender": sender, "group": group, "message": message, "flags": flags,
            "moderator": make_moderator(), "members": (first, second)}


def send(user, conversation, key, body="hi"):
    return do_send_message(sender=user, conversation_id=conversation.pk, client_msg_id=key, body=body)


def test_a_data_migration_makes_the_moderators_group_with_the_moderate_permission(db):
    # Run with the models as they were at that migration: a transactional test's flush may
    # have wiped what `migrate` made when the test database was created.
    loader = MigrationLoader(connection)
    migration = loader.get_migration("messaging", "0004_moderators_group")
    state_apps = loader.project_state(("messaging", "0004_moderators_group"), at_end=False).apps
    Group.objects.filter(name="Moderators").delete()
    for _ in range(2):  # and again: it is idempotent
        importlib.import_module(migration.__module__).create_group(state_apps, None)
    group = Group.objects.get(name="Moderators")
    assert list(group.permissions.values_list("content_type__app_label", "codename")) == [
        ("messaging", "moderate_message")]
    assert Permission.objects.filter(codename="moderate_message").count() == 1


def test_removing_a_message_keeps_its_text_in_the_audit_record_and_nowhere_else(flagged):
    do_resolve_flag(moderator=flagged["moderator"], flag_id=flagged["flags"][0].pk, action="remove_message",
                    note="abusive")
    message = Message.objects.get(pk=flagged["message"].pk)
    assert (message.state, message.body) == (Message.State.REMOVED, "")
    assert not Message.objects.filter(body__contains="moderators may").exists()
    decision = ModerationDecision.objects.get()
    assert (decision.action, decision.moderator, decision.note, decision.removed_body, decision.message,
            decision.user, decision.conversation) == (
        "remove_message", flagged["moderator"], "abusive", SECRET, message, flagged["sender"], flagged["group"])


def test_a_removal_resolves_every_open_flag_of_the_message_with_its_one_decision(flagged):
    do_resolve_flag(moderator=flagged["moderator"], flag_id=flagged["flags"][1].pk, action="remove_message")
    decision = ModerationDecision.objects.get()
    assert set(Flag.objects.values_list("status", "decision")) == {("resolved", decision.pk)}


def test_dismissing_resolves_only_that_flag_and_leaves_the_message_alone(flagged):
    first, second = flagged["flags"]
    resolved = do_resolve_flag(moderator=flagged["moderator"], flag_id=first.pk, action="dismiss", note="fine")
    assert (resolved.status, resolved.decision.action, resolved.decision.note) == ("resolved", "dismiss", "fine")
    assert Flag.objects.get(pk=second.pk).status == "open"
    assert Message.objects.get(pk=flagged["message"].pk).body == SECRET


def test_a_resolved_flag_cannot_be_decided_again(flagged):
    flag = flagged["flags"][0]
    do_resolve_flag(moderator=flagged["moderator"], flag_id=flag.pk, action="dismiss")
    with pytest.raises(Conflict):
        do_resolve_flag(moderator=flagged["moderator"], flag_id=flag.pk, action="remove_message")
    assert ModerationDecision.objects.count() == 1


@pytest.mark.parametrize("action", [None, "", "delete", 1])
def test_only_dismiss_and_remove_message_are_decisions(flagged, action):
    with pytest.raises(Invalid) as error:
        do_resolve_flag(moderator=flagged["moderator"], flag_id=flagged["flags"][0].pk, action=action)
    assert "action" in error.value.fields


def test_the_queue_shows_moderators_the_removed_text_as_evidence_and_members_see_nothing(flagged):
    do_resolve_flag(moderator=flagged["moderator"], flag_id=flagged["flags"][0].pk, action="remove_message")
    (item, _other) = flag_payloads(flag_queue(status="resolved"))
    assert item["evidence"] == SECRET
    assert (item["message"]["state"], item["message"]["body"]) == ("removed", "")
    assert item["decision"]["action"] == "remove_message"


def test_a_removed_message_cannot_be_flagged(flagged, make_user):
    do_resolve_flag(moderator=flagged["moderator"], flag_id=flagged["flags"][0].pk, action="remove_message")
    with pytest.raises(Conflict):
        do_flag_message(reporter=flagged["sender"], message_id=flagged["message"].pk, reason="spam")


def test_a_retried_send_of_a_removed_message_returns_the_tombstone(flagged):
    do_resolve_flag(moderator=flagged["moderator"], flag_id=flagged["flags"][0].pk, action="remove_message")
    retry = send(flagged["sender"], flagged["group"], "m", body=SECRET)
    assert retry.duplicate and retry.payload["state"] == "removed" and retry.payload["body"] == ""


def test_members_who_are_not_moderators_can_decide_nothing(flagged):
    member = flagged["members"][0]
    calls = [
        lambda: do_resolve_flag(moderator=member, flag_id=flagged["flags"][0].pk, action="remove_message"),
        lambda: do_set_suspended(moderator=member, user_id=flagged["sender"].pk, suspended=True),
        lambda: do_set_slow_mode(moderator=member, conversation_id=flagged["group"].pk, seconds=30),
    ]
    for call in calls:
        with pytest.raises(Forbidden):
            call()
    assert not ModerationDecision.objects.exists()
    assert Message.objects.get(pk=flagged["message"].pk).body == SECRET


def test_deciding_a_missing_flag_is_not_found(flagged):
    with pytest.raises(NotFound):
        do_resolve_flag(moderator=flagged["moderator"], flag_id=10**12, action="dismiss")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_moderators_removing_through_two_flags_of_one_message_decide_once(
        make_user, make_group, make_moderator):
    sender, first, second = make_user(), make_user(), make_user()
    group = make_group(sender, [first, second])
    message = send(sender, group, "m", body=SECRET).message
    flags = [do_flag_message(reporter=r, message_id=message.pk, reason="spam") for r in (first, second)]
    moderators = [make_moderator(), make_moderator()]
    barrier, outcomes = threading.Barrier(2), []

    def decide(moderator, flag):
        barrier.wait()
        try:
            do_resolve_flag(moderator=moderator, flag_id=flag.pk, action="remove_message")
            outcomes.append("removed")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=pair) for pair in zip(moderators, flags)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["conflict", "removed"]
    assert ModerationDecision.objects.get().removed_body == SECRET


# --- Suspension --------------------------------------------------------------------------------

def test_a_suspended_user_cannot_send_but_a_retry_of_an_earlier_send_still_answers(flagged):
    sender, group, moderator = flagged["sender"], flagged["group"], flagged["moderator"]
    do_set_suspended(moderator=moderator, user_id=sender.pk, suspended=True, note="cooling off")
    sender.refresh_from_db()
    with pytest.raises(Forbidden):
        send(sender, group, "new")
    assert send(sender, group, "m", body=SECRET).duplicate
    do_set_suspended(moderator=moderator, user_id=sender.pk, suspended=False)
    sender.refresh_from_db()
    assert not send(sender, group, "new").duplicate
    assert list(ModerationDecision.objects.order_by("id").values_list("action", "user", "note")) == [
        ("suspend", sender.pk, "cooling off"), ("unsuspend", sender.pk, "")]


def test_suspending_closes_the_users_sockets_with_4403(flagged, django_capture_on_commit_callbacks, monkeypatch):
    closed = []
    monkeypatch.setattr(moderation.fanout, "close_user_sockets", lambda **kw: closed.append(kw))
    do_set_suspended(moderator=flagged["moderator"], user_id=flagged["sender"].pk, suspended=True)
    assert closed == [{"user_id": flagged["sender"].pk, "code": 4403}]


def test_asking_for_the_state_a_user_is_in_records_no_decision(flagged):
    do_set_suspended(moderator=flagged["moderator"], user_id=flagged["sender"].pk, suspended=False)
    assert not ModerationDecision.objects.exists()


def test_moderators_cannot_suspend_themselves_or_a_superuser(flagged, make_user):
    moderator = flagged["moderator"]
    for target in (moderator, make_user(is_superuser=True)):
        with pytest.raises(Forbidden):
            do_set_suspended(moderator=moderator, user_id=target.pk, suspended=True)


# --- Slow mode -----------------------------------------------------------------------------------

def test_in_slow_mode_each_member_sends_one_message_per_period(flagged, monkeypatch):
    from messaging import ratelimit

    clock = [1_000_000.0]
    monkeypatch.setattr(ratelimit, "now", lambda: clock[0])
    sender, group, (member, _) = flagged["sender"], flagged["group"], flagged["members"]
    do_set_slow_mode(moderator=flagged["moderator"], conversation_id=group.pk, seconds=30, note="heated")
    send(sender, group, "a")
    with pytest.raises(RateLimited) as refused:
        send(sender, group, "b")
    assert 29_000 < refused.value.retry_after_ms <= 30_000
    send(member, group, "c")  # every member has their own pace
    clock[0] += refused.value.retry_after_ms / 1000
    send(sender, group, "b")
    decision = ModerationDecision.objects.get()
    assert (decision.action, decision.slow_mode_seconds, decision.conversation, decision.note) == (
        "slow_mode", 30, group, "heated")


def test_moderators_and_staff_are_exempt_from_slow_mode_when_the_setting_says_so(flagged, make_user, settings):
    group, moderator = flagged["group"], flagged["moderator"]
    staff = make_user(is_staff=True)
    from messaging.conversations import do_add_members

    do_add_members(actor=flagged["sender"], conversation_id=group.pk, user_ids=[moderator.pk, staff.pk])
    do_set_slow_mode(moderator=moderator, conversation_id=group.pk, seconds=60)
    for user in (moderator, staff):
        send(user, group, f"{user.pk}-1")
        send(user, group, f"{user.pk}-2")
    settings.PARLEY_RATE_LIMIT_EXEMPT_MODERATORS = False
    with pytest.raises(RateLimited):
        send(moderator, group, "too-fast")


def test_slow_mode_zero_turns_it_off(flagged):
    group, sender = flagged["group"], flagged["sender"]
    do_set_slow_mode(moderator=flagged["moderator"], conversation_id=group.pk, seconds=60)
    do_set_slow_mode(moderator=flagged["moderator"], conversation_id=group.pk, seconds=0)
    send(sender, group, "a")
    send(sender, group, "b")


@pytest.mark.parametrize("seconds", [-1, True, "30", 1.5, None, 10**9])
def test_slow_mode_takes_whole_seconds_up_to_a_setting(flagged, seconds):
    with pytest.raises(Invalid):
        do_set_slow_mode(moderator=flagged["moderator"], conversation_id=flagged["group"].pk, seconds=seconds)


def test_a_send_in_slow_mode_costs_no_extra_query(flagged, django_assert_num_queries):
    from messaging.models import User

    group = flagged["group"]
    do_set_slow_mode(moderator=flagged["moderator"], conversation_id=group.pk, seconds=10)
    sender = User.objects.get(pk=flagged["members"][0].pk)
    with django_assert_num_queries(QUERIES_PER_SEND):
        send(sender, group, "q1")


# --- Removals at the next hello ------------------------------------------------------------------

def test_a_device_learns_at_its_next_hello_what_was_removed_since_its_last(flagged, make_device, make_group):
    first, second = flagged["members"]
    device = make_device(first)
    assert removals_to_replay(device=device) == []  # a new device holds nothing to take back
    elsewhere = make_group(second, [flagged["sender"]])  # not first's conversation
    other = send(flagged["sender"], elsewhere, "x").message
    flag = do_flag_message(reporter=second, message_id=other.pk, reason="spam")
    do_resolve_flag(moderator=flagged["moderator"], flag_id=flag.pk, action="remove_message")
    do_resolve_flag(moderator=flagged["moderator"], flag_id=flagged["flags"][0].pk, action="remove_message")
    message = flagged["message"]
    assert removals_to_replay(device=device) == [
        {"type": "message.removed", "conversation": flagged["group"].pk, "id": message.pk, "seq": message.seq}]
    noted = device.last_seen_at
    device.refresh_from_db()
    assert device.last_seen_at == noted  # the hello is noted in the store, next time counts from it
