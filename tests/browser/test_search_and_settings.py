"""Search, conversation management and notification settings in the browser (issue 13 items
2-5 and their "Done when"): a search finds a message and opens it in context; a private
channel gets a member added from the UI, who sees it at once; a conversation is muted from
the list and looks muted; the panel renames, sets the topic and the notify level."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from messaging.conversations import do_create_group
from messaging.models import Membership

from .a11y import assert_accessible
from .conftest import PASSWORD, conversation_link, direct, open_app, seed

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def test_a_search_finds_a_message_and_opens_it_in_context(people, signed_in):
    alice, bob = people["alice"], people["bob"]
    chat = direct(alice, bob)
    lines = [(bob if n % 2 else alice, f"ordinary line {n}") for n in range(1, 121)]
    lines[19] = (bob, "the <b>zanzibar</b> itinerary is attached")  # seq 20, far above the latest page
    seed(chat, *lines)
    page = open_app(signed_in("alice", bypass_csp=True))  # bypass: axe-core is injected

    page.keyboard.press("Control+k")
    switcher = page.get_by_role("dialog", name="Go to a conversation")
    page.keyboard.type("zanzibar")
    result = switcher.get_by_role("option", name=re.compile("zanzibar"))
    expect(result).to_have_count(1)
    expect(result.locator("mark")).to_have_text("zanzibar")
    expect(result).to_contain_text("Bob Baker")
    assert result.locator("b").count() == 0  # the body's markup stays text, never an element
    assert_accessible(page, "the switcher's search results", "dialog[open]")
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(rf"/c/{chat.pk}\?at=20$"))
    target = page.locator('#message-list .message[data-seq="20"]')
    expect(target).to_have_class(re.compile(r"\bhighlight\b"))
    expect(target).to_be_in_viewport()
    expect(target).to_be_focused()
    expect(page.locator('#message-list .message[data-seq="15"]')).to_be_attached()  # the context above it
    expect(page.locator('#message-list .message[data-seq="120"]')).not_to_be_attached()  # not the latest page


def test_a_private_channel_gets_a_member_added_from_the_panel_and_they_see_it_live(people, signed_in):
    alice, bob = people["alice"], people["bob"]
    channel = do_create_group(creator=alice, title="launch-room", member_ids=[], kind="channel",
                              public=False).conversation
    seed(channel, (alice, "Only the launch crew in here"))
    bobs_page = open_app(signed_in("bob"))
    expect(conversation_link(bobs_page, "launch-room")).to_have_count(0)

    page = open_app(signed_in("alice", bypass_csp=True), f"/c/{channel.pk}")
    page.get_by_role("button", name="Details").click()
    panel = page.get_by_role("dialog", name="About launch-room")
    expect(panel.get_by_role("list", name="Members").get_by_role("listitem")).to_have_count(1)
    panel.get_by_label("Add people").fill("bob")
    panel.get_by_role("button", name="Add Bob Baker").click()
    expect(panel.get_by_role("list", name="Members").get_by_role("listitem")).to_have_count(2)
    expect(panel.get_by_role("listitem").filter(has_text="Bob Baker")).to_be_visible()
    assert_accessible(page, "the details panel", "dialog[open]")

    # Bob's open app learns of the channel without reloading and can open its history.
    link = conversation_link(bobs_page, "launch-room")
    expect(link).to_be_visible()
    link.click()
    expect(bobs_page.locator("#message-list .bubble")).to_have_text(["Only the launch crew in here"])
    expect(bobs_page.locator("#chat-subtitle")).to_have_text("Private channel · 2 members")
    assert Membership.objects.filter(conversation=channel, user=bob).exists()


def test_the_panel_renames_sets_a_topic_and_the_notify_level_and_members_see_it(people, signed_in):
    alice, bob = people["alice"], people["bob"]
    group = do_create_group(creator=alice, title="Team", member_ids=[bob.pk]).conversation
    bobs_page = open_app(signed_in("bob"), f"/c/{group.pk}")
    page = open_app(signed_in("alice"), f"/c/{group.pk}")

    page.get_by_role("button", name="Details").click()
    panel = page.get_by_role("dialog", name="About Team")
    panel.get_by_label("Name").fill("Core team")
    panel.get_by_label("Topic").fill("Shipping v2 on Friday")
    panel.get_by_role("button", name="Save name and topic").click()
    panel = page.get_by_role("dialog", name="About Core team")  # the panel is named after it too
    expect(panel).to_be_visible()
    panel.get_by_label("Only mentions of me").check()
    expect(page.locator("#toast")).to_contain_text("only when mentioned")
    page.keyboard.press("Escape")
    expect(page.locator("#chat-topic")).to_have_text("Shipping v2 on Friday")

    expect(bobs_page.locator("#chat-title")).to_have_text("Core team")
    expect(bobs_page.locator("#chat-topic")).to_have_text("Shipping v2 on Friday")
    # Bob is a plain member: he sees the topic, and no way to change it.
    bobs_page.get_by_role("button", name="Details").click()
    bobs_panel = bobs_page.get_by_role("dialog", name="About Core team")
    expect(bobs_panel.locator("#details-form")).to_be_hidden()
    expect(bobs_panel.locator("#details-topic-text")).to_have_text("Shipping v2 on Friday")
    assert Membership.objects.get(conversation=group, user=alice).notify == "mentions"


def test_a_conversation_is_muted_from_the_list_and_looks_muted(people, signed_in):
    alice, bob = people["alice"], people["bob"]
    chat = direct(alice, bob)
    seed(chat, (bob, "ping"))
    page = open_app(signed_in("alice", bypass_csp=True))
    link = conversation_link(page, "Bob Baker")
    expect(page).to_have_title("(1) Parley")

    link.hover()
    page.get_by_role("button", name="Mute Bob Baker").click()
    dialog = page.get_by_role("dialog", name="Mute Bob Baker")
    assert_accessible(page, "the mute dialog", "dialog[open]")
    dialog.get_by_role("button", name="For 8 hours").click()

    expect(link).to_have_class(re.compile(r"\bmuted\b"))
    expect(link).to_contain_text("muted")  # said to screen readers too
    expect(page).to_have_title("Parley")  # a muted conversation's unread asks for no attention
    membership = Membership.objects.get(conversation=chat, user=alice)
    assert membership.muted_until is not None

    page.get_by_role("button", name="Unmute Bob Baker").click()
    expect(link).not_to_have_class(re.compile(r"\bmuted\b"))
    expect(page).to_have_title("(1) Parley")
    membership.refresh_from_db()
    assert membership.muted_until is None


def test_mute_from_the_list_with_the_keyboard(people, signed_in):
    alice, bob = people["alice"], people["bob"]
    direct(alice, bob)
    page = open_app(signed_in("alice"))
    link = conversation_link(page, "Bob Baker")
    link.focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Mute Bob Baker")).to_be_focused()
    page.keyboard.press("Enter")
    page.get_by_role("dialog", name="Mute Bob Baker").get_by_role("button", name="Until I unmute").focus()
    page.keyboard.press("Enter")
    expect(link).to_have_class(re.compile(r"\bmuted\b"))


# Stands in for the browser's Notification API (granted) and lets the test hide the tab.
RECORD_NOTIFICATIONS = """
window.__shown = [];
window.__hidden = false;
Object.defineProperty(Document.prototype, "hidden", { configurable: true, get() { return window.__hidden; } });
window.Notification = class {
  constructor(title, options) { window.__shown.push({ title, body: options.body, tag: options.tag }); }
  close() {}
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
};
"""


def rest_as(context, base_url, username):
    """REST calls as ``username`` through the server under test (its own channel layer carries
    the frames; this process's would not reach its sockets)."""
    token = context.request.post(f"{base_url}/api/v1/auth/token",
                                 data={"username": username, "password": PASSWORD}).json()["token"]

    def call(method, path, data):
        response = context.request.fetch(f"{base_url}/api/v1/{path}", method=method, data=data,
                                         headers={"Authorization": f"Token {token}"})
        assert response.ok, response.text()
        return response.json()

    return call


def test_a_hidden_tab_shows_notifications_as_the_settings_say(people, signed_in, new_context, base_url):
    alice, bob = people["alice"], people["bob"]
    chat = direct(alice, bob)
    as_alice, as_bob = rest_as(new_context(), base_url, "alice"), rest_as(new_context(), base_url, "bob")
    context = signed_in("alice")
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = open_app(context)
    link = conversation_link(page, "Bob Baker")
    page.evaluate("window.__hidden = true")

    def shown(count):
        page.wait_for_function(f"window.__shown.length >= {count}")
        return page.evaluate("window.__shown")

    def bob_says(key, body):
        as_bob("POST", f"conversations/{chat.pk}/messages", {"client_msg_id": key, "body": body})

    bob_says("n1", "are you there?")
    expect(page).to_have_title("(1) Parley")
    assert shown(1) == [{"title": "Bob Baker", "body": "are you there?", "tag": f"conversation-{chat.pk}"}]

    as_alice("PATCH", f"conversations/{chat.pk}/me", {"muted_until": (timezone.now() + timedelta(hours=1)).isoformat()})
    expect(link).to_have_class(re.compile(r"\bmuted\b"))
    bob_says("n2", "@alice even this?")
    expect(page).to_have_title("Parley")

    as_alice("PATCH", f"conversations/{chat.pk}/me", {"muted_until": None, "notify": "mentions"})
    expect(link).not_to_have_class(re.compile(r"\bmuted\b"))
    bob_says("n3", "just chatting")
    bob_says("n4", "@alice look at this")
    expect(page).to_have_title("(4) Parley")
    assert [n["title"] for n in shown(2)] == ["Bob Baker", "Bob Baker mentioned you"]
