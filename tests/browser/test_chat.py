"""Two people chat in real time in two browsers (issue 6, "Done when")."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from messaging.conversations import do_create_group

from .conftest import (
    bubbles,
    conversation_link,
    direct,
    message_with,
    open_app,
    screenshot,
    seed,
    send,
)

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def test_two_people_chat_both_ways_in_real_time_and_ticks_reach_read(people, signed_in, make_user):
    alice_user = people["alice"]
    carol, dan = make_user("carol", display_name="Carol Chen"), make_user("dan", display_name="Dan Diaz")
    hike = do_create_group(creator=carol, title="Weekend hike", member_ids=[alice_user.pk, dan.pk]).conversation
    seed(hike, (carol, "Saturday 8am at the trailhead?"), (dan, "I'll bring snacks"), (alice_user, "Count me in!"))
    do_create_group(creator=alice_user, title="general", member_ids=[], kind="channel", public=True)
    seed(direct(carol, alice_user), (carol, "Did you see the new design doc?"))

    alice = open_app(signed_in("alice"))
    bob = open_app(signed_in("bob"))

    alice.get_by_role("button", name="New chat").click()
    alice.get_by_label("Find people by name").fill("bob")
    alice.get_by_role("button", name="Chat with Bob Baker").click()
    expect(alice.locator("#chat-title")).to_have_text("Bob Baker")
    send(alice, "Hi Bob! Lunch at noon?")

    mine = message_with(alice, "Hi Bob! Lunch at noon?")
    expect(mine.locator(".tick")).to_have_attribute("data-state", "delivered")

    # Bob's list shows the new chat live, with an unread badge, without a reload.
    link = conversation_link(bob, "Alice Archer")
    expect(link.locator(".unread-badge")).to_have_text("1")
    link.click()
    expect(message_with(bob, "Hi Bob! Lunch at noon?")).to_be_visible()
    expect(mine.locator(".tick")).to_have_attribute("data-state", "read")

    bob.get_by_label("Message", exact=True).fill("Sounds good")
    expect(alice.locator("#typing-indicator")).to_have_text("Bob Baker is typing…")
    bob.get_by_label("Message", exact=True).press("Shift+Enter")
    bob.get_by_label("Message", exact=True).press_sequentially("see you there.")
    bob.get_by_label("Message", exact=True).press("Enter")
    expect(message_with(alice, "Sounds good\nsee you there.")).to_be_visible()
    expect(alice.locator("#typing-indicator")).to_have_text("")
    expect(bubbles(alice)).to_have_text(["Hi Bob! Lunch at noon?", "Sounds good\nsee you there."])
    expect(bubbles(bob)).to_have_text(["Hi Bob! Lunch at noon?", "Sounds good\nsee you there."])
    send(alice, "Great, I'll book a table.")
    expect(message_with(alice, "Great, I'll book a table.").locator(".tick")).to_have_attribute("data-state", "read")
    screenshot(alice, "chat")

    mine.hover()
    mine.get_by_role("button", name="Info").click()
    info = alice.get_by_role("dialog", name="Message info")
    expect(info).to_contain_text("Read by 1")
    expect(info.locator("li").filter(has_text="Bob Baker").locator(".state-label")).to_have_text("Read")
    screenshot(alice, "message-info")


def test_unread_badges_clear_on_the_readers_other_tab(people, signed_in):
    alice_user, bob_user = people["alice"], people["bob"]
    chat = direct(alice_user, bob_user)
    seed(chat, (alice_user, "Are you there?"), (alice_user, "Ping me when you read this"))

    bob = signed_in("bob")
    second_tab = open_app(bob)
    expect(conversation_link(second_tab, "Alice Archer").locator(".unread-badge")).to_have_text("2")
    expect(second_tab).to_have_title("(2) Parley")

    first_tab = open_app(bob, f"/c/{chat.pk}")
    expect(bubbles(first_tab)).to_have_text(["Are you there?", "Ping me when you read this"])
    expect(first_tab.locator("[data-divider=unread]")).to_be_visible()

    expect(conversation_link(second_tab, "Alice Archer").locator(".unread-badge")).to_have_count(0)
    expect(second_tab).to_have_title("Parley")


def test_a_script_in_a_message_is_shown_as_text_and_never_runs(people, signed_in):
    chat = direct(people["alice"], people["bob"])
    alice = open_app(signed_in("alice"), f"/c/{chat.pk}")
    bob = open_app(signed_in("bob"), f"/c/{chat.pk}")
    dialogs = []
    for page in (alice, bob):
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    send(alice, payload)

    for page in (alice, bob):
        expect(message_with(page, payload)).to_be_visible()
        expect(page.locator("#message-list script, #message-list img")).to_have_count(0)
    expect(conversation_link(bob, "Alice Archer").locator(".conversation-preview")).to_have_text(f"{payload}")
    bob.reload()
    expect(message_with(bob, payload)).to_be_visible()
    assert dialogs == []


def test_the_keyboard_alone_opens_a_chat_sends_and_closes_dialogs(people, signed_in):
    chat = direct(people["alice"], people["bob"])
    seed(chat, (people["bob"], "Can you hear me?"))
    page = open_app(signed_in("alice"))

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    new_chat = page.get_by_role("button", name="New chat")
    new_chat.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog", name="Start a chat")).to_be_visible()
    expect(page.get_by_label("Find people by name")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="Start a chat")).to_be_hidden()
    expect(new_chat).to_be_focused()

    page.keyboard.press("Tab")  # New group
    page.keyboard.press("Tab")  # Channels
    page.keyboard.press("Tab")  # the first conversation
    expect(conversation_link(page, "Bob Baker")).to_be_focused()
    page.keyboard.press("Enter")
    composer = page.get_by_label("Message", exact=True)
    expect(composer).to_be_focused()
    page.keyboard.type("Loud and clear")
    page.keyboard.press("Enter")
    expect(message_with(page, "Loud and clear").locator(".tick")).to_have_attribute("data-state", "sent")
    expect(composer).to_have_value("")


def test_who_is_online_shows_at_once_and_follows_them_going_offline(people, signed_in):
    direct(people["alice"], people["bob"])
    bob = open_app(signed_in("bob"))
    # Bob came online before Alice connected: her page learns it from the members snapshot,
    # not from a presence frame (that one went out before she was there).
    alice = open_app(signed_in("alice"))
    dot = conversation_link(alice, "Bob Baker").locator(".presence-dot")
    expect(dot).to_have_attribute("data-online", "true")
    expect(conversation_link(alice, "Bob Baker")).to_have_accessible_name(re.compile(r"^Bob Baker ?, online\."))
    conversation_link(alice, "Bob Baker").click()
    expect(alice.locator("#chat-subtitle")).to_have_text("Online")

    bob.context.close()
    expect(alice.locator("#chat-subtitle")).to_have_text(re.compile(r"^Last seen today at "))
    expect(dot).to_have_attribute("data-online", "false")
