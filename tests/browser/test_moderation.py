"""Members flag a message; a moderator removes it; everyone sees the tombstone (issue 6)."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from messaging.conversations import do_create_group
from messaging.models import Message
from messaging.moderation import do_flag_message

from .conftest import direct, message_with, open_app, screenshot, seed

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

SPAM = "Cheap watches!!! visit watches.example now"
TOMBSTONE = "This message was removed by a moderator."


def test_a_moderator_removes_a_flagged_message_and_both_members_see_the_tombstone(people, signed_in, make_user):
    alice_user, bob_user = people["alice"], people["bob"]
    carol = make_user("carol", display_name="Carol Chen")
    club = do_create_group(creator=carol, title="Book club", member_ids=[alice_user.pk]).conversation
    seed(club, (carol, "Honestly, anyone who liked that book is an idiot."))
    do_flag_message(reporter=alice_user, message_id=Message.objects.get(conversation=club).pk, reason="abuse",
                    note="Not the first time this week")
    chat = direct(alice_user, bob_user)
    seed(chat, (bob_user, "hey, how was the trip?"), (alice_user, SPAM), (bob_user, "uh, what?"))
    alice = open_app(signed_in("alice"), f"/c/{chat.pk}")
    bob = open_app(signed_in("bob"), f"/c/{chat.pk}")

    spam = message_with(bob, SPAM)
    spam.hover()
    spam.get_by_role("button", name="Report").click()
    dialog = bob.get_by_role("dialog", name="Report message")
    dialog.get_by_label("Spam").check()
    dialog.get_by_label("Note for the moderators").fill("Alice's account looks hacked")
    dialog.get_by_role("button", name="Report").click()
    expect(bob.locator("#toast")).to_have_text("Reported. A moderator will look at it.")
    spam.get_by_role("button", name="Report").click()
    dialog.get_by_label("Abuse or harassment").check()
    dialog.get_by_role("button", name="Report").click()
    expect(dialog.get_by_role("alert")).to_have_text("You have already reported this message.")
    dialog.get_by_role("button", name="Cancel").click()

    assert bob.context.new_page().goto("/moderation").status == 403

    moderator = signed_in("mod").new_page()
    moderator.goto("/moderation")
    card = moderator.locator(".flag-card").filter(has_text=SPAM)
    expect(card).to_contain_text("Message by Alice Archer in a direct chat")
    expect(card).to_contain_text("Reported by Bob Baker")
    expect(card).to_contain_text("Alice's account looks hacked")
    card.get_by_label("Note (kept in the audit log)").fill("Spam link; asked Alice to change her password")
    card.get_by_role("button", name="Remove message").click()
    expect(card).to_have_count(0)
    other = moderator.locator(".flag-card").filter(has_text="Book club")
    other.get_by_label("Note (kept in the audit log)").fill("Rude, not removable; talked to Carol")
    other.get_by_role("button", name="Dismiss").click()
    expect(moderator.locator("#flag-status")).to_contain_text("The queue is empty")

    # Live, through message.removed frames: no reload on either side.
    for page in (alice, bob):
        expect(message_with(page, TOMBSTONE)).to_have_attribute("data-state", "removed")
        expect(page.locator("#message-list")).not_to_contain_text("watches")
    expect(bob.locator("#toast")).to_be_hidden()
    screenshot(bob, "removed")
    bob.reload()
    expect(message_with(bob, TOMBSTONE)).to_have_attribute("data-state", "removed")

    moderator.get_by_role("tab", name="Resolved").click()
    expect(moderator.locator(".flag-card").filter(has_text=SPAM)).to_contain_text(
        "Message removed by Morgan Moderator")
    expect(moderator.locator(".flag-card").filter(has_text="Book club")).to_contain_text(
        "Dismissed by Morgan Moderator")


def test_a_flag_shows_its_message_in_context_and_links_into_the_conversation_at_that_message(people, signed_in):
    alice_user, bob_user = people["alice"], people["bob"]
    general = do_create_group(creator=alice_user, title="general", member_ids=[bob_user.pk], kind="channel",
                              public=True).conversation
    seed(general, *[((alice_user, bob_user)[n % 2], SPAM if n == 20 else f"line {n}") for n in range(1, 41)])
    spam = Message.objects.get(conversation=general, seq=20)
    do_flag_message(reporter=alice_user, message_id=spam.pk, reason="spam")

    moderator = signed_in("mod").new_page()
    moderator.goto("/moderation")
    card = moderator.locator(".flag-card").filter(has_text=SPAM)
    context = card.get_by_role("list", name="The message in context").locator("li")
    expect(context).to_have_count(7)  # PARLEY_MODERATION_CONTEXT_MESSAGES (3) before and after
    expect(context.nth(0)).to_contain_text("line 17")
    expect(card.locator("li[aria-current=true]")).to_contain_text(SPAM)

    card.get_by_label("Slow mode").select_option("30")
    card.get_by_role("button", name="Set slow mode").click()
    expect(moderator.locator("#toast")).to_have_text("Slow mode set.")
    moderator.get_by_role("tab", name="Audit log").click()
    expect(moderator.locator("#flag-list li").first).to_contain_text("Slow mode set in general 30 s by Morgan Moderator")
    moderator.get_by_role("tab", name="Open queue").click()

    card.get_by_role("link", name="Open in conversation").click()
    expect(moderator).to_have_url(f"/c/{general.pk}?at=20")
    row = moderator.locator("#message-list .message[data-seq='20']")
    expect(row).to_have_class(re.compile(r"\bhighlight\b"))
    expect(row).to_be_focused()
    expect(row).to_be_in_viewport()
    expect(moderator.get_by_role("button", name="Join channel")).to_be_visible()


def test_a_flagged_message_edited_after_the_report_shows_what_was_reported_and_its_edit_history(people, signed_in):
    from messaging.changes import do_edit_message

    alice_user, bob_user = people["alice"], people["bob"]
    chat = direct(alice_user, bob_user)
    seed(chat, (bob_user, "You're all idiots"), (alice_user, "Excuse me?"))
    insult = Message.objects.get(conversation=chat, seq=1)
    do_edit_message(editor=bob_user, message_id=insult.pk, body="You're all idiots, honestly")
    do_flag_message(reporter=alice_user, message_id=insult.pk, reason="abuse")
    do_edit_message(editor=bob_user, message_id=insult.pk, body="Nice weather today")  # covering it up

    moderator = signed_in("mod").new_page()
    moderator.goto("/moderation")
    card = moderator.locator(".flag-card")
    expect(card.locator("li[aria-current=true] .context-body")).to_have_text("You're all idiots, honestly")
    history = card.get_by_role("group").filter(has_text="Edit history (2 edits)")
    versions = card.locator(".flag-history li")
    expect(versions).to_have_count(3)
    expect(versions.nth(0)).to_contain_text("Sent ")
    expect(versions.nth(0)).to_contain_text("You're all idiots")
    expect(versions.nth(1)).to_contain_text("· reported")
    expect(versions.nth(1)).to_contain_text("You're all idiots, honestly")
    expect(versions.nth(2)).to_contain_text("· now")
    expect(versions.nth(2)).to_contain_text("Nice weather today")
    expect(history).to_have_count(1)
