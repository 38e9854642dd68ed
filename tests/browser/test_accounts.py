"""Sign up, log in and log out in the browser; the app at phone width."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from messaging.conversations import do_create_group
from messaging.models import Device

from .conftest import PASSWORD, bubbles, conversation_link, direct, open_app, screenshot, seed, send

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def test_a_newcomer_signs_up_lands_in_the_app_registers_this_browser_once_and_logs_out(transactional_db, new_context):
    page = new_context().new_page()
    page.goto("/")
    expect(page).to_have_url("/login/?next=/")
    page.get_by_role("link", name="Create an account").click()

    page.get_by_label("Username").fill("erin")
    page.get_by_label("Display name").fill("Erin Evans")
    page.get_by_label("Password").fill("123")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("alert")).to_contain_text("too short")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    expect(page.locator(".whoami")).to_have_text("Erin Evans")
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    assert Device.objects.filter(user__username="erin").count() == 1

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url("/login/")
    page.goto("/")
    expect(page).to_have_url("/login/?next=/")


def test_logging_in_with_a_wrong_password_says_so_and_the_right_one_opens_the_page_asked_for(people, new_context):
    chat = direct(people["alice"], people["bob"])
    page = new_context().new_page()
    page.goto(f"/c/{chat.pk}")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not-my-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    page.get_by_label("Password").fill("")
    screenshot(page, "login")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"/c/{chat.pk}")
    expect(page.locator("#chat-title")).to_have_text("Bob Baker")


def test_at_phone_width_the_list_and_the_conversation_take_turns(people, signed_in, make_user):
    alice_user, bob_user = people["alice"], people["bob"]
    carol = make_user("carol", display_name="Carol Chen")
    hike = do_create_group(creator=carol, title="Weekend hike", member_ids=[alice_user.pk]).conversation
    seed(hike, (carol, "Trailhead at 8, bring water!"))
    seed(direct(carol, alice_user), (carol, "Lunch tomorrow?"), (alice_user, "Sure, 12:30?"))
    chat = direct(alice_user, bob_user)
    seed(chat, (bob_user, "Are we still on for tonight?"), (alice_user, "Yes! 7pm works."),
         (bob_user, "Perfect. I'll grab the tickets."))
    phone = signed_in("alice", viewport={"width": 390, "height": 780}, is_mobile=True, has_touch=True)
    page = open_app(phone)
    screenshot(page, "phone-list")

    conversation_link(page, "Bob Baker").click()
    expect(page.locator(".sidebar")).to_be_hidden()
    expect(bubbles(page)).to_have_count(3)
    send(page, "See you there")
    expect(page.locator("#message-list .message.mine .tick").last).to_have_attribute("data-state", "sent")
    screenshot(page, "phone-chat")

    page.get_by_role("button", name="Back to conversations").click()
    expect(page).to_have_url("/")
    expect(page.locator(".sidebar")).to_be_visible()
    page.go_back()
    expect(page.locator("#chat-title")).to_have_text("Bob Baker")


def test_the_app_registers_the_service_worker_and_offers_notifications_when_the_server_can_push(people, signed_in):
    page = open_app(signed_in("alice"))
    expect(page.get_by_role("button", name="Enable notifications")).to_be_visible()
    # The button shows only once the worker registered (its scope is /static/, where it is served).
    scopes = page.evaluate("navigator.serviceWorker.getRegistrations().then((all) => all.map((r) => r.scope))")
    assert scopes == [f"{page.url}static/"]
