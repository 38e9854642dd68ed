"""axe-core finds no serious or critical violation on any screen, in the light and the dark
theme, at desktop and phone widths (issue 14, item 4 and its "Done when")."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from messaging.attachments import do_upload
from messaging.changes import do_edit_message
from messaging.conversations import do_create_group
from messaging.models import Message
from messaging.moderation import do_flag_message
from messaging.reactions import do_add_reaction
from messaging.send import do_send_message
from receipts.watermarks import do_mark_read
from tests import files

from .a11y import assert_accessible
from .conftest import backdate, conversation_link, direct, open_app, screenshot, seed

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

WIDTHS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 780}, "is_mobile": True, "has_touch": True},
}


@pytest.fixture
def scene(people, make_user):
    """A direct chat with history over three days and unread messages (an edited one, one with
    reactions, a reply that mentions Alice), a group, a channel, and a flag for the moderator's
    queue."""
    alice, bob = people["alice"], people["bob"]
    carol = make_user("carol", display_name="Carol Chen")
    chat = direct(alice, bob)
    seed(chat, (bob, "Did you get the tickets?"), (alice, "Yes, two for Friday."), (bob, "Great, thanks!"),
         (alice, "See you at 7"), (bob, "Running 5 minutes late"), (bob, "Buy cheap watches at watches.example"))
    backdate(chat, 2, [1, 2])
    backdate(chat, 1, [3, 4])
    do_mark_read(user=alice, conversation_id=chat.pk, seq=4)
    said = {m.seq: m for m in Message.objects.filter(conversation=chat)}
    do_edit_message(editor=bob, message_id=said[5].pk, body="Running **10** minutes late, sorry")
    for user, emoji in ((alice, "👍"), (bob, "🙏"), (alice, "😅")):
        do_add_reaction(user=user, message_id=said[5].pk, emoji=emoji)
    do_send_message(sender=bob, conversation_id=chat.pk, client_msg_id="reply", body="@alice could we make it 7:15?",
                    reply_to=said[4].pk)
    hike = do_create_group(creator=carol, title="Weekend hike", member_ids=[alice.pk, bob.pk]).conversation
    photo = do_upload(uploader=carol, file=files.upload(files.png(400, 300), "trail.png"), conversation_id=hike.pk)
    plan = do_upload(uploader=carol, file=files.upload(files.pdf_html_polyglot(), "route.pdf"), conversation_id=hike.pk)
    do_send_message(sender=carol, conversation_id=hike.pk, client_msg_id="files", body="The route",
                    attachments=[photo.pk, plan.pk])
    seed(hike, (carol, "Trailhead at 8?"))
    do_create_group(creator=alice, title="general", member_ids=[bob.pk], kind="channel", public=True)
    spam = Message.objects.get(conversation=chat, seq=6)
    do_flag_message(reporter=alice, message_id=spam.pk, reason="spam", note="Not like Bob")
    # Covered up after the report: the queue shows what was reported and the edit history.
    do_edit_message(editor=bob, message_id=spam.pk, body="Sorry, wrong chat!")
    return {"chat": chat, "hike": hike}


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
    expect(conversation_link(page, "Bob Baker").locator(".unread-badge")).to_have_text("3")
    expect(conversation_link(page, "Bob Baker").locator(".mention-badge")).to_have_text("@1")
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

    # The controls of issue 12: the emoji picker, the delete confirmation, the edit box, the
    # @-list and the reply bar.
    theirs.click()
    check_dialog(page, lambda: theirs.get_by_role("button", name="React", exact=True).click(), "Add a reaction")
    composer = page.get_by_label("Message", exact=True)
    composer.fill("On my way")
    composer.press("Enter")
    fresh = page.locator("#message-list .message.mine").filter(has_text="On my way")
    expect(fresh.locator(".tick")).not_to_have_attribute("data-state", "pending")
    fresh.click()
    check_dialog(page, lambda: fresh.get_by_role("button", name="Delete", exact=True).click(), "Delete message?")
    composer.focus()
    composer.press("ArrowUp")
    expect(page.get_by_role("textbox", name="Edit message")).to_be_focused()
    assert_accessible(page, "a chat with a message being edited")
    page.keyboard.press("Escape")
    theirs.click()
    theirs.get_by_role("button", name="Reply", exact=True).click()
    page.keyboard.type("@b")
    expect(page.get_by_role("listbox", name="People to mention")).to_be_visible()
    assert_accessible(page, "the composer with a reply and the @-list")
    if width == "desktop" and theme == "light":
        screenshot(page, "reply-and-mention")
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    expect(page.locator("#reply-bar")).to_be_hidden()
    page.goto(f"/c/{scene['hike'].pk}")
    expect(page.locator("#message-list .attachment-image img")).to_be_visible()
    expect(page.get_by_role("link", name="Download route.pdf", exact=False)).to_be_visible()
    assert_accessible(page, "a chat with an image and a file")
    check_dialog(page, lambda: page.get_by_role("button", name="View image trail.png").click(), "trail.png")

    page.goto("/settings")
    expect(page.locator("#device-list li")).to_have_count(1)
    assert_accessible(page, "the settings page")
    if width == "desktop" and theme == "light":
        screenshot(page, "settings")

    moderator = signed_in("mod", **options).new_page()
    moderator.goto("/moderation")
    expect(moderator.locator(".flag-context")).to_be_visible()
    expect(moderator.locator(".flag-history")).to_contain_text("Sorry, wrong chat!")
    assert_accessible(moderator, "the moderation queue")
    if width == "desktop" and theme == "light":
        screenshot(moderator, "moderation")
    moderator.get_by_role("tab", name="Audit log").click()
    expect(moderator.locator("#flag-status")).to_have_text("No decisions yet.")
    assert_accessible(moderator, "the audit log")
