"""Everything from the keyboard alone (issue 14, item 3 and its "Done when"): these tests
never touch the mouse; they press keys, and Tab their way to what they need."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from messaging.conversations import do_create_group
from messaging.models import Message
from messaging.moderation import do_flag_message
from receipts.watermarks import do_mark_read

from .conftest import direct, message_with, open_app, seed, tab_to

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def focused(page: Page) -> Locator:
    return page.locator(":focus")


@pytest.fixture
def chats(people, make_user):
    alice, bob = people["alice"], people["bob"]
    carol = make_user("carol", display_name="Carol Chen")
    general = do_create_group(creator=alice, title="general", member_ids=[bob.pk, carol.pk], kind="channel",
                              public=True).conversation
    seed(general, *[((bob, carol)[n % 2], f"news {n}") for n in range(1, 61)])
    do_mark_read(user=alice, conversation_id=general.pk, seq=10)
    hike = do_create_group(creator=carol, title="Weekend hike", member_ids=[alice.pk]).conversation
    seed(hike, (carol, "Trailhead at 8?"))
    chat = direct(alice, bob)
    seed(chat, *[((alice, bob)[n % 2], f"chat line {n}") for n in range(1, 51)])
    return {"general": general, "hike": hike, "chat": chat}


def test_the_app_from_the_keyboard_alone_switcher_shortcuts_roving_lists_dialogs_and_the_jump_pill(chats, signed_in):
    page = open_app(signed_in("alice"))
    composer = page.get_by_label("Message", exact=True)
    links = page.locator("#conversation-list a[data-conversation]")
    expect(links).to_have_count(3)

    # The conversation list is one Tab stop; arrows move within it, Enter opens.
    tab_to(page, links.first)
    expect(links.first).to_contain_text("Bob Baker")
    page.keyboard.press("ArrowDown")
    expect(links.nth(1)).to_be_focused()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    expect(page.locator("#chat-title")).to_have_text("Bob Baker")
    expect(composer).to_be_focused()

    # A 50-message chat is a handful of Tab presses from the list to the composer, not 54: the
    # current row's mute button, the chat's Details button, the current message and its actions
    # (Reply, React, Edit, Delete, Info), the attach button, the composer.
    tab_to(page, links.first, backwards=True)
    assert tab_to(page, composer) <= 10

    # Into the messages: one stop, arrows between them, Tab to the current one's actions.
    tab_to(page, page.locator("#message-list .message").last, backwards=True)
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect(focused(page)).to_have_attribute("data-seq", "48")
    expect(focused(page)).to_contain_text("chat line 48")
    for action in ("Reply", "React", "Edit", "Delete", "Info"):  # a message of mine
        page.keyboard.press("Tab")
        expect(focused(page)).to_have_accessible_name(action)
    page.keyboard.press("Enter")
    info = page.get_by_role("dialog", name="Message info")
    expect(info).to_contain_text("chat line 48")
    page.keyboard.press("Escape")
    expect(info).to_be_hidden()
    expect(focused(page)).to_have_accessible_name("Info")
    page.keyboard.press("Escape")  # Esc: back to writing
    expect(composer).to_be_focused()

    # Ctrl+K finds a conversation by name.
    page.keyboard.press("Control+k")
    switcher = page.get_by_role("dialog", name="Go to a conversation")
    expect(switcher).to_be_visible()
    page.keyboard.type("hike")
    expect(switcher.get_by_role("option")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(page.locator("#chat-title")).to_have_text("Weekend hike")
    expect(composer).to_be_focused()
    page.keyboard.type("On my way")
    page.keyboard.press("Enter")
    expect(page.locator("#message-list .message.mine .bubble")).to_have_text(["On my way"])

    # Alt+Up and Alt+Down walk the list (the hike is now the most recent, so on top).
    page.keyboard.press("Alt+ArrowDown")
    expect(page.locator("#chat-title")).to_have_text("Bob Baker")
    page.keyboard.press("Alt+ArrowDown")
    expect(page.locator("#chat-title")).to_have_text("general")
    page.keyboard.press("Alt+ArrowUp")
    expect(page.locator("#chat-title")).to_have_text("Bob Baker")
    page.keyboard.press("Alt+ArrowDown")
    expect(page.locator("#chat-title")).to_have_text("general")

    # general opened at its first unread; the pill takes the keyboard to the latest.
    expect(page.locator("[data-divider=unread] + .message")).to_have_attribute("data-seq", "11")
    pill = page.get_by_role("button", name=re.compile(r"new messages"))
    tab_to(page, pill, backwards=True)
    page.keyboard.press("Enter")
    expect(message_with(page, "news 60")).to_be_in_viewport()  # exactly: "news 6" at 01:xx says "news 601:xx"
    expect(composer).to_be_focused()

    # ? lists the shortcuts (outside a text field); Esc closes the list.
    page.keyboard.press("Escape")
    tab_to(page, page.locator("#message-list .message.current"), backwards=True)
    page.keyboard.press("?")
    shortcuts = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(shortcuts).to_contain_text("Find and open a conversation")
    page.keyboard.press("Escape")
    expect(shortcuts).to_be_hidden()


def test_settings_and_moderation_from_the_keyboard_alone(people, signed_in):
    alice_user, bob_user = people["alice"], people["bob"]
    chat = direct(alice_user, bob_user)
    seed(chat, (bob_user, "Buy followers at spam.example"))
    do_flag_message(reporter=alice_user, message_id=Message.objects.get(conversation=chat).pk, reason="spam")
    alice = signed_in("alice")
    elsewhere = open_app(alice)  # a second device of Alice's (another tab registers once per browser)
    laptop = open_app(signed_in("alice"))

    settings = laptop.context.new_page()
    settings.goto("/settings")
    name = settings.get_by_label("Display name")
    tab_to(settings, name)
    settings.keyboard.press("Control+a")
    settings.keyboard.type("Alice A.")
    settings.keyboard.press("Enter")
    expect(settings.get_by_text("Saved. This is the name people see now.")).to_be_visible()
    expect(settings.locator(".whoami")).to_have_text("Alice A.")

    tab_to(settings, settings.get_by_label("Follow the system"))
    settings.keyboard.press("ArrowDown")
    settings.keyboard.press("ArrowDown")
    expect(settings.get_by_label("Dark")).to_be_checked()
    expect(settings.locator("html")).to_have_attribute("data-theme", "dark")

    other = settings.get_by_role("button", name=re.compile(r"^Log out (?!this browser)"))
    expect(settings.locator("#device-list li")).to_have_count(2)
    tab_to(settings, other)
    settings.keyboard.press("Enter")
    expect(settings.locator("#device-list li")).to_have_count(1)
    # The browser that was that device is logged out, and says so by going to the login page.
    expect(elsewhere).to_have_url(re.compile(r"/login"))

    moderator = signed_in("mod").new_page()
    moderator.goto("/moderation")
    expect(moderator.get_by_role("link", name=re.compile(r"^Moderation\s*, 1 flag waiting$"))).to_be_visible()
    suspend = moderator.get_by_role("button", name="Suspend Bob Baker")
    tab_to(moderator, moderator.get_by_label("Note (kept in the audit log)"))
    moderator.keyboard.type("Spam links, again")
    tab_to(moderator, suspend)
    moderator.keyboard.press("Enter")
    expect(moderator.get_by_role("button", name="Lift Bob Baker's suspension")).to_be_visible()
    tab_to(moderator, moderator.get_by_role("button", name="Remove message"), backwards=True)
    moderator.keyboard.press("Enter")
    expect(moderator.locator("#flag-status")).to_contain_text("The queue is empty")
    expect(moderator.locator("#pending-count")).to_be_hidden()
    tab_to(moderator, moderator.get_by_role("tab", name="Audit log"), backwards=True)
    moderator.keyboard.press("Enter")
    expect(moderator.locator("#flag-list li")).to_have_count(2)
    expect(moderator.locator("#flag-list li").first).to_contain_text("Message removed")
    expect(moderator.locator("#flag-list li").nth(1)).to_contain_text("Suspended Bob Baker by Morgan Moderator")
