"""axe-core finds no serious or critical violation on any screen, in the light and the dark
theme, at desktop and phone widths (issue 14, item 4 and its "Done when")."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from messaging.conversations import do_create_group
from messaging.models import Message
from messaging.moderation import do_flag_message
from receipts.watermarks import do_mark_read

from .a11y import assert_accessible
from .conftest import backdate, conversation_link, direct, open_app, screenshot, seed

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

WIDTHS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 780}, "is_mobile": True, "has_touch": True},
}


@pytest.fixture
def scene(people, make_user):
    """A direct chat with history over three days and unread messages, a group, a channel,
    and a flag for the moderator's queue."""
    alice, bob = people["alice"], people["bob"]
    carol = make_user("carol", display_name="Carol Chen")
    chat = direct(alice, bob)
    seed(chat, (bob, "Did you get the tickets?"), (alice, "Yes, two for Friday."), (bob, "Great, thanks!"),
         (alice, "See you at 7"), (bob, "Running 5 minutes late"), (bob, "Buy cheap watches at watches.example"))
    backdate(chat, 2, [1, 2])
    backdate(chat, 1, [3, 4])
    do_mark_read(user=alice, conversation_id=chat.pk, seq=4)
    hike = do_create_group(creator=carol, title="Weekend hike", member_ids=[alice.pk, bob.pk]).conversation
    seed(hike, (carol, "Trailhead at 8?"))
    do_create_group(creator=alice, title="general", member_ids=[bob.pk], kind="channel", public=True)
    spam = Message.objects.get(conversation=chat, seq=6)
    do_flag_message(reporter=alice, message_id=spam.pk, reason="spam", note="Not like Bob")
    return {"chat": chat}


def check_dialog(page: Page, opener, name: str) -> None:
    opener()
    dialog = page.get_by_role("dialog", name=name)
    expect(dialog).to_be_visible()
    assert_accessible(page, f"the {name!r} dialog", "dialog[open]")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_screen_has_no_serious_or_critical_axe_violation(scene, signed_in, new_context, theme, width):
    options = {**WIDTHS[width], "color_scheme": theme, "bypass_csp": True}

    visitor = new_context(**options).new_page()
    visitor.goto("/login")
    visitor.get_by_label("Username").fill("alice")
    visitor.get_by_label("Password").fill("wrong")
    visitor.get_by_role("button", name="Log in").click()
    expect(visitor.get_by_role("alert")).to_be_visible()
    assert_accessible(visitor, "the login page with an error")
    visitor.goto("/signup")
    assert_accessible(visitor, "the sign-up page")
    visitor.goto("/api/v1/docs")
    assert_accessible(visitor, "the API docs")

    page = open_app(signed_in("alice", **options))
    expect(conversation_link(page, "Bob Baker").locator(".unread-badge")).to_have_text("2")
    assert_accessible(page, "the conversation list")
    check_dialog(page, lambda: page.get_by_role("button", name="New chat").click(), "Start a chat")
    check_dialog(page, lambda: page.get_by_role("button", name="New group").click(), "New group")
    check_dialog(page, lambda: page.get_by_role("button", name="Channels").click(), "Public channels")
    if width == "desktop" and theme == "light":
        page.keyboard.press("Control+k")
        page.keyboard.type("b")
        screenshot(page, "switcher")
        page.keyboard.press("Escape")
    check_dialog(page, lambda: page.keyboard.press("Control+k"), "Go to a conversation")
    check_dialog(page, lambda: page.keyboard.press("?"), "Keyboard shortcuts")
    check_dialog(page, lambda: page.get_by_role("button", name="Mute Weekend hike").click(), "Mute Weekend hike")

    conversation_link(page, "Bob Baker").click()
    expect(page.locator("[data-divider=unread]")).to_be_visible()
    expect(page.locator(".day-separator").first).to_be_visible()
    assert_accessible(page, "a chat")
    if width == "desktop" or theme == "dark":
        # The README's pictures: a chat opened at its first unread, in each theme and on a phone.
        screenshot(page, {"desktop": f"{theme}-chat", "phone": "phone-dark-chat"}[width])
    check_dialog(page, lambda: page.get_by_role("button", name="Details").click(), "About Bob Baker")
    mine = page.locator("#message-list .message.mine").last
    mine.click()
    check_dialog(page, lambda: mine.get_by_role("button", name="Info").click(), "Message info")
    theirs = page.locator("#message-list .message.theirs").last
    theirs.click()
    check_dialog(page, lambda: theirs.get_by_role("button", name="Report").click(), "Report message")

    page.goto("/settings")
    expect(page.locator("#device-list li")).to_have_count(1)
    assert_accessible(page, "the settings page")
    if width == "desktop" and theme == "light":
        screenshot(page, "settings")

    moderator = signed_in("mod", **options).new_page()
    moderator.goto("/moderation")
    expect(moderator.locator(".flag-context")).to_be_visible()
    assert_accessible(moderator, "the moderation queue")
    if width == "desktop" and theme == "light":
        screenshot(moderator, "moderation")
    moderator.get_by_role("tab", name="Audit log").click()
    expect(moderator.locator("#flag-status")).to_have_text("No decisions yet.")
    assert_accessible(moderator, "the audit log")
