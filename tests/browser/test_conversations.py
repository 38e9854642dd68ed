"""Groups, channels, history paging and the degraded-mode banner in the browser (issue 6)."""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import WebSocketRoute, expect

from .conftest import bubbles, conversation_link, direct, message_with, open_app, seed, send

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def test_a_new_group_and_a_joined_channel_show_up_live_for_everyone_in_them(people, signed_in, make_user):
    make_user("carol", password="pw-Parley-123", display_name="Carol Chen")
    alice = open_app(signed_in("alice"))
    bob = open_app(signed_in("bob"))

    alice.get_by_role("button", name="New group").click()
    dialog = alice.get_by_role("dialog", name="New group")
    dialog.get_by_label("Group name").fill("Trip planning")
    dialog.get_by_label("Add people").fill("b")
    dialog.get_by_role("button", name="Add Bob Baker").click()
    expect(dialog.locator("#group-picked")).to_have_text("Bob Baker")
    dialog.get_by_role("button", name="Create group").click()
    expect(alice.locator("#chat-title")).to_have_text("Trip planning")
    expect(alice.locator("#chat-subtitle")).to_have_text("2 members")
    send(alice, "Who's driving?")
    expect(conversation_link(bob, "Trip planning").locator(".unread-badge")).to_have_text("1")

    bob.get_by_role("button", name="Channels").click()
    channels = bob.get_by_role("dialog", name="Public channels")
    channels.get_by_text("Create a channel").click()
    channels.get_by_label("Channel name").fill("announcements")
    channels.get_by_role("button", name="Create channel").click()
    expect(bob.locator("#chat-title")).to_have_text("announcements")

    alice.get_by_role("button", name="Channels").click()
    alice.get_by_role("dialog", name="Public channels").get_by_role("button", name="Join announcements").click()
    expect(alice.locator("#chat-title")).to_have_text("announcements")
    send(alice, "hello all")
    expect(message_with(bob, "hello all")).to_be_visible()

    # Someone not in the channel who follows a link is offered to join it.
    carol = open_app(signed_in("carol"), urlsplit(bob.url).path)
    expect(carol.get_by_text("You're not in this channel yet.")).to_be_visible()
    expect(carol.get_by_label("Message", exact=True)).to_be_hidden()
    carol.get_by_role("button", name="Join channel").click()
    expect(carol.locator("#chat-subtitle")).to_have_text("Public channel · 3 members")
    send(carol, "thanks for the invite")
    expect(message_with(alice, "thanks for the invite")).to_be_visible()


def test_older_conversations_load_as_the_list_is_scrolled_each_once(people, signed_in, settings):
    from messaging.conversations import do_create_group

    alice_user, bob_user = people["alice"], people["bob"]
    page_size = settings.PARLEY_CONVERSATIONS_PAGE_SIZE
    titles = [f"Project {n:03}" for n in range(1, page_size + 6)]
    groups = {title: do_create_group(creator=bob_user, title=title, member_ids=[alice_user.pk]).conversation
              for title in titles}
    alice = open_app(signed_in("alice"))
    links = alice.locator("#conversation-list a[data-conversation]")
    expect(links).to_have_count(page_size)
    expect(links.first).to_have_text(re.compile(titles[-1]))
    expect(alice.get_by_role("button", name="Load more conversations")).to_be_attached()

    alice.locator("#conversation-scroller").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(links).to_have_count(len(titles))
    expect(alice.get_by_role("button", name="Load more conversations")).to_be_hidden()
    shown = [alice.locator("#conversation-list .conversation-title").nth(i).text_content()
             for i in range(len(titles))]
    assert shown == titles[::-1]

    # A conversation from the second page is live like any other, and moves to the top.
    bob = open_app(signed_in("bob"), f"/c/{groups['Project 001'].pk}")
    expect(bob.locator("#chat-title")).to_have_text("Project 001")
    send(bob, "the oldest project is back")
    expect(links.first).to_contain_text("the oldest project is back")
    expect(links.first.locator(".unread-badge")).to_have_text("1")
    expect(links).to_have_count(len(titles))


def test_scrolling_up_pages_back_through_history_in_order_without_repeats(people, signed_in):
    alice_user, bob_user = people["alice"], people["bob"]
    chat = direct(alice_user, bob_user)
    seed(chat, *[((alice_user, bob_user)[n % 2], f"message {n}") for n in range(1, 131)])
    alice = open_app(signed_in("alice"), f"/c/{chat.pk}")
    expect(bubbles(alice)).to_have_count(50)
    expect(bubbles(alice).last).to_have_text("message 130")

    scroller = alice.locator("#message-scroller")
    for shown in (100, 130):
        scroller.evaluate("el => { el.scrollTop = 0; }")
        expect(bubbles(alice)).to_have_count(shown)
    expect(alice.get_by_text("This is the start of the conversation.")).to_be_visible()
    assert bubbles(alice).all_text_contents() == [f"message {n}" for n in range(1, 131)]


def test_a_degraded_frame_shows_a_banner_until_the_server_recovers(people, signed_in):
    context = signed_in("alice")
    sockets: list[WebSocketRoute] = []

    def gateway(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    context.route_web_socket("**/ws/v1/**", gateway)
    alice = open_app(context)
    banner = alice.locator("#degraded-banner")
    expect(banner).to_be_hidden()

    sockets[-1].send(json.dumps({"type": "degraded", "shed": ["typing", "presence"]}))
    expect(banner).to_have_text("Parley is under heavy load. Paused for now: typing, presence. "
                                "Your messages are still delivered.")
    sockets[-1].send(json.dumps({"type": "degraded", "shed": []}))
    expect(banner).to_be_hidden()

    # A banner does not outlive its connection: after a reconnect the server says it again
    # (right after ready) if it is still degraded, and this one is not.
    sockets[-1].send(json.dumps({"type": "degraded", "shed": ["typing"]}))
    expect(banner).to_be_visible()
    sockets[-1].close(code=1012, reason="restarting")
    expect(alice.locator("#connection-text")).to_contain_text("Reconnecting")
    expect(alice.locator("#connection")).to_have_attribute("data-state", "online")
    assert len(sockets) == 2
    expect(banner).to_be_hidden()
