"""The change stream's write side (messaging.changes, messaging.reactions, messaging.mentions):
edits, deletes, reactions and removals numbered 1..N per conversation, idempotent retries,
who may change what, and text that is gone once deleted (issue 12, "Done when")."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from messaging.changes import do_delete_message, do_edit_message
from messaging.conversations import do_create_group, do_remove_member
from messaging.errors import Conflict, Forbidden, Invalid, NotFound
from messaging.mentions import unread_mentions
from messaging.models import (
    Conversation,
    Mention,
    Message,
    MessageChange,
    MessageEdit,
    ModerationDecision,
    Reaction,
    User,
)
from messaging.moderation import do_flag_message, do_resolve_flag, flag_payloads, flag_queue
from messaging.reactions import check_emoji, do_add_reaction, do_remove_reaction, summarize
from messaging.send import do_send_message
from receipts.watermarks import do_mark_read

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(make_user, make_group):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    group = make_group(alice, [bob, carol])
    return alice, bob, carol, group


def send(sender, conversation, body="hello", key=None, **kw):
    key = key or f"{sender.username}-{Message.objects.count()}"
    return do_send_message(sender=sender, conversation_id=conversation.pk, client_msg_id=key, body=body, **kw)


def changes_of(conversation) -> list[tuple[int, str, int]]:
    return list(MessageChange.objects.filter(conversation=conversation).order_by("change")
                .values_list("change", "kind", "message_id"))


def last_change(conversation) -> int:
    return Conversation.objects.values_list("last_change", flat=True).get(pk=conversation.pk)


# --- Edits -----------------------------------------------------------------------------------

def test_the_sender_edits_and_the_change_takes_the_next_number_not_a_seq(chat):
    alice, _bob, _carol, group = chat
    message = send(alice, group, "helo").message
    edited = do_edit_message(editor=alice, message_id=message.pk, body="hello")
    assert (edited["body"], edited["seq"], edited["version"]) == ("hello", 1, 1)
    assert edited["edited_at"] is not None
    assert changes_of(group) == [(1, "edited", message.pk)]
    assert Conversation.objects.get(pk=group.pk).last_seq == 1  # messages stay numbered 1..N
    assert list(MessageEdit.objects.filter(message_id=message.pk).values_list("body", flat=True)) == ["helo"]


def test_an_edit_with_the_body_it_already_has_changes_nothing_and_takes_no_number(chat):
    alice, _bob, _carol, group = chat
    message = send(alice, group, "hello").message
    do_edit_message(editor=alice, message_id=message.pk, body="hello world")
    again = do_edit_message(editor=alice, message_id=message.pk, body="hello world")  # a retried edit
    assert again["version"] == 1 and last_change(group) == 1 and MessageEdit.objects.count() == 1


def test_only_the_sender_edits(chat):
    alice, bob, _carol, group = chat
    message = send(alice, group).message
    with pytest.raises(Forbidden):
        do_edit_message(editor=bob, message_id=message.pk, body="mine now")
    assert last_change(group) == 0


def test_an_edit_after_the_window_is_refused_and_a_zero_window_has_no_limit(chat, settings):
    alice, _bob, _carol, group = chat
    message = send(alice, group).message
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(hours=25))
    with pytest.raises(Forbidden):
        do_edit_message(editor=alice, message_id=message.pk, body="late")
    settings.PARLEY_EDIT_WINDOW_SECONDS = 0
    assert do_edit_message(editor=alice, message_id=message.pk, body="late")["body"] == "late"


def test_a_deleted_or_removed_message_cannot_be_edited(chat):
    alice, _bob, _carol, group = chat
    message = send(alice, group).message
    do_delete_message(actor=alice, message_id=message.pk)
    with pytest.raises(Conflict):
        do_edit_message(editor=alice, message_id=message.pk, body="back")


def test_non_members_and_removed_members_change_nothing_and_learn_nothing(chat, make_user):
    alice, bob, _carol, group = chat
    message = send(bob, group).message
    stranger = make_user("stranger")
    for attempt in (lambda u: do_edit_message(editor=u, message_id=message.pk, body="x"),
                    lambda u: do_delete_message(actor=u, message_id=message.pk),
                    lambda u: do_add_reaction(user=u, message_id=message.pk, emoji="👍"),
                    lambda u: do_remove_reaction(user=u, message_id=message.pk, emoji="👍")):
        with pytest.raises(NotFound):
            attempt(stranger)
    do_remove_member(actor=alice, conversation_id=group.pk, user_id=bob.pk)
    with pytest.raises(NotFound):
        do_edit_message(editor=bob, message_id=message.pk, body="after leaving")
    assert last_change(group) == 0


def test_a_suspended_user_changes_nothing(chat):
    alice, _bob, _carol, group = chat
    message = send(alice, group).message
    User.objects.filter(pk=alice.pk).update(suspended_at=timezone.now())
    alice.refresh_from_db()
    with pytest.raises(Forbidden):
        do_edit_message(editor=alice, message_id=message.pk, body="x")
    with pytest.raises(Forbidden):
        do_add_reaction(user=alice, message_id=message.pk, emoji="👍")


# --- Deletes ---------------------------------------------------------------------------------

def test_a_delete_leaves_no_text_reactions_mentions_or_history(chat):
    alice, bob, _carol, group = chat
    message = send(alice, group, "secret plan @bob").message
    do_edit_message(editor=alice, message_id=message.pk, body="secret plan v2 @bob")
    do_add_reaction(user=bob, message_id=message.pk, emoji="👍")
    deleted = do_delete_message(actor=alice, message_id=message.pk)
    assert (deleted["state"], deleted["body"], deleted["html"], deleted["reactions"], deleted["mentions"]) == (
        "deleted", "", "", [], [])
    stored = Message.objects.get(pk=message.pk)
    assert (stored.body, stored.html, stored.mention_ids, stored.reactions) == ("", "", [], [])
    assert not MessageEdit.objects.filter(message=stored).exists()
    assert not Reaction.objects.filter(message=stored).exists() and not Mention.objects.exists()
    assert [kind for _, kind, _ in changes_of(group)] == ["edited", "reaction", "deleted"]
    again = do_delete_message(actor=alice, message_id=message.pk)
    assert again["version"] == 3 and last_change(group) == 3


def test_a_moderator_deletes_anyones_message_member_or_not_and_the_audit_keeps_the_evidence(chat, make_moderator):
    alice, bob, _carol, group = chat
    moderator = make_moderator("mod")
    message = send(alice, group, "abuse").message
    with pytest.raises(Forbidden):
        do_delete_message(actor=bob, message_id=message.pk)  # a member, not the sender
    deleted = do_delete_message(actor=moderator, message_id=message.pk)
    assert deleted["state"] == "deleted"
    decision = ModerationDecision.objects.get(action=ModerationDecision.Action.DELETE_MESSAGE)
    assert (decision.removed_body, decision.moderator, decision.user) == ("abuse", moderator, alice)


def test_a_removal_by_a_moderator_is_a_removed_change(chat, make_moderator):
    alice, bob, _carol, group = chat
    moderator = make_moderator("mod")
    message = send(alice, group, "spam spam").message
    flag = do_flag_message(reporter=bob, message_id=message.pk, reason="spam")
    do_resolve_flag(moderator=moderator, flag_id=flag.pk, action="remove_message")
    assert changes_of(group) == [(1, "removed", message.pk)]
    assert Message.objects.get(pk=message.pk).state == "removed"


def test_the_queue_shows_what_a_flagged_message_said_before_it_was_edited(chat, make_moderator):
    alice, bob, _carol, group = chat
    make_moderator("mod")
    message = send(alice, group, "you are awful").message
    do_flag_message(reporter=bob, message_id=message.pk, reason="abuse")
    do_edit_message(editor=alice, message_id=message.pk, body="you are lovely")
    (item,) = flag_payloads(flag_queue(status="open"))
    assert item["reported_body"] == "you are awful"
    assert [edit["body"] for edit in item["edits"]] == ["you are awful"]
    assert item["evidence"] == "you are lovely"
    do_delete_message(actor=alice, message_id=message.pk)  # the sender cannot erase the report
    (item,) = flag_payloads(flag_queue(status="open"))
    assert (item["reported_body"], item["edits"], item["message"]["body"]) == ("you are awful", [], "")


# --- Replies ---------------------------------------------------------------------------------

def test_a_reply_carries_an_excerpt_that_follows_the_originals_edit_and_delete(chat, settings):
    alice, bob, _carol, group = chat
    settings.PARLEY_REPLY_EXCERPT_CHARS = 20
    original = send(alice, group, "the   meeting moves to thursday at noon").message
    reply = send(bob, group, "ok!", reply_to=original.pk).payload
    assert reply["reply_to"] == {"id": original.pk, "seq": 1, "sender": reply["reply_to"]["sender"],
                                 "excerpt": "the meeting moves to…", "state": "visible"}
    do_edit_message(editor=alice, message_id=original.pk, body="it moves to friday")
    assert Message.objects.select_related("reply_to__sender").get(seq=2, conversation=group).reply_to.body == (
        "it moves to friday")
    from messaging.replay import replay_page
    page = replay_page(user=bob, conversation_id=group.pk, after_seq=1)
    assert page.messages[0]["reply_to"]["excerpt"] == "it moves to friday"
    do_delete_message(actor=alice, message_id=original.pk)
    page = replay_page(user=bob, conversation_id=group.pk, after_seq=1)
    assert (page.messages[0]["reply_to"]["excerpt"], page.messages[0]["reply_to"]["state"]) == ("", "deleted")


def test_reply_to_must_be_a_live_message_of_the_same_conversation(chat, make_group):
    alice, bob, _carol, group = chat
    elsewhere = send(alice, make_group(alice, [bob], title="other"), "elsewhere").message
    gone = send(alice, group, "gone").message
    do_delete_message(actor=alice, message_id=gone.pk)
    for reply_to in (elsewhere.pk, gone.pk, 10**12, "1", True):
        with pytest.raises(Invalid) as refused:
            send(bob, group, "answer", reply_to=reply_to)
        assert "reply_to" in refused.value.fields
    assert Conversation.objects.get(pk=group.pk).last_seq == 1


def test_a_retry_with_another_reply_to_is_a_conflict_and_an_edited_original_send_still_retries(chat):
    alice, bob, _carol, group = chat
    first = send(alice, group, "one").message
    second = send(alice, group, "two").message
    reply = send(bob, group, "yes", key="r1", reply_to=first.pk)
    assert send(bob, group, "yes", key="r1", reply_to=first.pk).duplicate
    with pytest.raises(Conflict):
        send(bob, group, "yes", key="r1", reply_to=second.pk)
    with pytest.raises(Conflict):
        send(bob, group, "yes", key="r1")
    do_edit_message(editor=bob, message_id=reply.message.pk, body="yes, agreed")
    retry = send(bob, group, "yes", key="r1", reply_to=first.pk)  # the first attempt's answer was lost
    assert retry.duplicate and retry.payload["body"] == "yes, agreed"


# --- Reactions -------------------------------------------------------------------------------

def test_reactions_count_users_and_a_repeated_reaction_changes_nothing(chat):
    alice, bob, carol, group = chat
    message = send(alice, group).message
    do_add_reaction(user=bob, message_id=message.pk, emoji="👍")
    do_add_reaction(user=carol, message_id=message.pk, emoji=":thumbs_up:")
    state = do_add_reaction(user=carol, message_id=message.pk, emoji=":+1:")  # the same reaction again
    assert state["reactions"] == [{"emoji": "👍", "count": 2, "users": [bob.pk, carol.pk]}]
    assert last_change(group) == 2
    state = do_remove_reaction(user=bob, message_id=message.pk, emoji="👍")
    assert state["reactions"] == [{"emoji": "👍", "count": 1, "users": [carol.pk]}]
    state = do_remove_reaction(user=bob, message_id=message.pk, emoji="👍")  # not his any more
    assert last_change(group) == 3 and state["version"] == 3


def test_a_message_takes_at_most_the_configured_number_of_different_reactions(chat, settings):
    alice, bob, _carol, group = chat
    settings.PARLEY_MAX_REACTIONS_PER_MESSAGE = 2
    message = send(alice, group).message
    do_add_reaction(user=bob, message_id=message.pk, emoji="👍")
    do_add_reaction(user=bob, message_id=message.pk, emoji="🎉")
    with pytest.raises(Conflict):
        do_add_reaction(user=bob, message_id=message.pk, emoji="😂")
    do_add_reaction(user=alice, message_id=message.pk, emoji="🎉")  # an existing one is always fine


def test_a_reaction_shows_at_most_the_configured_users(make_user, make_group, settings):
    settings.PARLEY_REACTION_USERS_SHOWN = 3
    owner = make_user("owner")
    fans = User.objects.bulk_create([User(username=f"fan{i}") for i in range(5)])
    group = make_group(owner, fans)
    message = send(owner, group).message
    for fan in fans:
        do_add_reaction(user=fan, message_id=message.pk, emoji="❤️")
    state = do_remove_reaction(user=fans[0], message_id=message.pk, emoji="❤")
    assert state["reactions"] == [{"emoji": "❤️", "count": 4, "users": [f.pk for f in fans[1:4]]}]


@pytest.mark.parametrize("emoji, stored", [
    ("👍", "👍"), ("👍🏽", "👍🏽"), ("❤", "❤️"), (":heart:", "❤️"), (":tada:", "🎉"), ("👨‍👩‍👧", "👨‍👩‍👧"), ("🇫🇷", "🇫🇷"),
])
def test_an_emoji_is_stored_in_one_spelling(emoji, stored):
    assert check_emoji(emoji) == stored


@pytest.mark.parametrize("emoji", ["", "a", "👍👍", ":nope:", "<img>", 5, None, "👍" * 40, "\x00"])
def test_anything_but_one_emoji_is_refused(emoji):
    with pytest.raises(Invalid):
        check_emoji(emoji)


def test_a_deleted_message_takes_no_reactions(chat):
    alice, bob, _carol, group = chat
    message = send(alice, group).message
    do_delete_message(actor=alice, message_id=message.pk)
    with pytest.raises(Conflict):
        do_add_reaction(user=bob, message_id=message.pk, emoji="👍")


REACTORS, EMOJI = 4, ["👍", "🎉", "😂"]


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.booleans(), st.integers(0, REACTORS - 1), st.sampled_from(EMOJI)), max_size=25))
def test_the_reaction_summary_always_equals_one_made_from_the_rows(steps, make_group, settings):
    """The invariant of messaging.reactions, whatever order people react and take it back."""
    settings.PARLEY_REACTION_USERS_SHOWN = 2
    run = uuid.uuid4().hex[:8]
    users = User.objects.bulk_create([User(username=f"r{run}{i}") for i in range(REACTORS)])  # no password to hash
    group = make_group(users[0], users[1:])
    message = send(users[0], group).message
    for add, who, emoji in steps:
        action = do_add_reaction if add else do_remove_reaction
        action(user=users[who], message_id=message.pk, emoji=emoji)
        rows = Reaction.objects.filter(message_id=message.pk).order_by("id").values_list("emoji", "user_id")
        assert Message.objects.get(pk=message.pk).reactions == summarize(rows)
    numbers = list(MessageChange.objects.filter(conversation=group).order_by("change").values_list("change", flat=True))
    assert numbers == list(range(1, len(numbers) + 1)) and last_change(group) == len(numbers)


# --- Mentions --------------------------------------------------------------------------------

def test_mentions_of_members_are_resolved_highlighted_and_counted_until_read(chat, make_user):
    alice, bob, carol, group = chat
    make_user("dave")  # not a member: stays text
    message = send(alice, group, "@bob and @Carol, not @dave nor `@bob` again").message
    assert message.mention_ids == sorted([bob.pk, carol.pk])
    assert f'<span class="mention" data-user="{bob.pk}">@bob</span>' in message.html
    assert "@dave" in message.html and 'data-user' not in message.html.split("@dave")[1].split("</p>")[0]
    membership = group.memberships.get(user=bob)
    assert unread_mentions(membership) == 1
    send(alice, group, "no mention here")
    do_mark_read(user=bob, conversation_id=group.pk, seq=1)
    assert unread_mentions(group.memberships.get(user=bob)) == 0


def test_an_edit_may_add_a_mention_and_a_delete_takes_it_away(chat):
    alice, bob, _carol, group = chat
    message = send(alice, group, "hi all").message
    assert unread_mentions(group.memberships.get(user=bob)) == 0
    do_edit_message(editor=alice, message_id=message.pk, body="hi @bob")
    assert unread_mentions(group.memberships.get(user=bob)) == 1
    do_delete_message(actor=alice, message_id=message.pk)
    assert unread_mentions(group.memberships.get(user=bob)) == 0


def test_at_all_mentions_everyone_in_a_small_conversation_only(chat, settings):
    alice, bob, carol, group = chat
    message = send(alice, group, "@all standup now").message
    assert message.mention_ids == sorted([alice.pk, bob.pk, carol.pk])
    settings.PARLEY_MENTION_ALL_MAX_MEMBERS = 2
    message = send(alice, group, "@all again").message
    assert message.mention_ids == [] and "mention" not in message.html


# --- Numbering under concurrency --------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_edits_and_reactions_take_change_numbers_one_to_n_with_no_gap():
    users = User.objects.bulk_create([User(username=f"racer{i}") for i in range(8)])
    group = do_create_group(creator=users[0], title="race", member_ids=[u.pk for u in users[1:]]).conversation
    messages = [send(user, group, f"from {user.username}", key=f"m{user.pk}").message for user in users]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))

    def work(index: int) -> None:
        user = users[index]
        try:
            barrier.wait()
            for round_ in range(15):
                target = messages[(index + round_) % len(messages)]
                do_add_reaction(user=user, message_id=target.pk, emoji=EMOJI[round_ % 3])
                do_edit_message(editor=user, message_id=messages[index].pk, body=f"edit {round_}")
                do_add_reaction(user=user, message_id=target.pk, emoji=EMOJI[round_ % 3])  # a retry: free
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(users))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    numbers = [change for change, _, _ in changes_of(group)]
    assert numbers == list(range(1, last_change(group) + 1))
    expected_reactions = Reaction.objects.filter(message__conversation=group).count()
    assert len(numbers) == expected_reactions + 8 * 15  # every new reaction and every edit, nothing else
    for message in Message.objects.filter(conversation=group):
        rows = Reaction.objects.filter(message=message).order_by("id").values_list("emoji", "user_id")
        assert message.reactions == summarize(rows)
