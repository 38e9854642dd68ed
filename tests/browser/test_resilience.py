"""Nothing typed is lost and nothing is shown twice: an offline spell, a reload with messages
still in the outbox, and a send whose confirmation never arrived (issue 6, "Done when")."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import WebSocketRoute, expect

from messaging.models import Message

from .conftest import bubbles, direct, message_with, open_app, screenshot, seed, send

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def stored_bodies(conversation) -> list[str]:
    return list(Message.objects.filter(conversation=conversation).order_by("seq").values_list("body", flat=True))


def test_an_offline_spell_loses_nothing_and_shows_nothing_twice(people, signed_in):
    alice_user, bob_user = people["alice"], people["bob"]
    chat = direct(alice_user, bob_user)
    seed(chat, (bob_user, "morning!"))
    alice_context = signed_in("alice")
    alice = open_app(alice_context, f"/c/{chat.pk}")
    bob = open_app(signed_in("bob"), f"/c/{chat.pk}")

    alice_context.set_offline(True)
    expect(alice.locator("#connection")).to_have_attribute("data-state", "offline")
    send(alice, "written on the train")
    send(alice, "still in the tunnel")
    expect(message_with(alice, "still in the tunnel").locator(".tick")).to_have_attribute("data-state", "pending")
    send(bob, "while you were away")
    expect(message_with(bob, "while you were away")).to_be_visible()

    alice_context.set_offline(False)
    expect(alice.locator("#connection")).to_have_attribute("data-state", "online")
    everything = ["morning!", "written on the train", "still in the tunnel", "while you were away"]
    expected_alice = ["morning!", "while you were away", "written on the train", "still in the tunnel"]
    # Bob's message was stored first (seq order), Alice's outbox went out on reconnect.
    expect(bubbles(bob)).to_have_text(expected_alice)
    expect(bubbles(alice)).to_have_text(expected_alice)
    expect(message_with(alice, "still in the tunnel").locator(".tick")).to_have_attribute("data-state", "read")
    assert sorted(stored_bodies(chat)) == sorted(everything)


def test_a_message_typed_while_the_socket_is_down_survives_a_reload(people, signed_in):
    alice_user, bob_user = people["alice"], people["bob"]
    chat = direct(alice_user, bob_user)
    alice_context = signed_in("alice")
    socket_blocked = {"on": True}

    def gateway(ws: WebSocketRoute) -> None:
        if socket_blocked["on"]:
            ws.close(code=1012, reason="restarting")
        else:
            ws.connect_to_server()

    alice_context.route_web_socket("**/ws/v1/**", gateway)
    alice = alice_context.new_page()
    alice.goto(f"/c/{chat.pk}")
    expect(alice.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    expect(alice.locator("#connection-text")).to_contain_text("Reconnecting in")
    send(alice, "typed before the reload")
    expect(message_with(alice, "typed before the reload").locator(".tick")).to_have_attribute("data-state", "pending")

    alice.reload()
    expect(message_with(alice, "typed before the reload").locator(".tick")).to_have_attribute("data-state", "pending")
    expect(alice.locator("#connection-text")).to_contain_text("Reconnecting in")
    screenshot(alice, "reconnecting")
    socket_blocked["on"] = False
    alice.get_by_role("button", name="Retry now").click()
    expect(alice.locator("#connection")).to_have_attribute("data-state", "online")
    expect(message_with(alice, "typed before the reload").locator(".tick")).to_have_attribute("data-state", "sent")
    expect(bubbles(alice)).to_have_text(["typed before the reload"])

    bob = open_app(signed_in("bob"), f"/c/{chat.pk}")
    expect(bubbles(bob)).to_have_text(["typed before the reload"])
    assert stored_bodies(chat) == ["typed before the reload"]


def test_a_send_stored_but_never_confirmed_is_retried_after_a_reload_and_shown_once(people, signed_in):
    chat = direct(people["alice"], people["bob"])
    alice_context = signed_in("alice")
    swallow = {"on": True}

    def gateway(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_page(message) -> None:
            frame = json.loads(message)
            own_echo = frame.get("type") == "send.ok" or (
                frame.get("type") == "message" and frame["message"]["sender"]["username"] == "alice")
            if not (swallow["on"] and own_echo):
                ws.send(message)

        server.on_message(to_page)

    alice_context.route_web_socket("**/ws/v1/**", gateway)
    alice = open_app(alice_context, f"/c/{chat.pk}")
    send(alice, "did this go through?")
    # Stored on the server, but this page never heard back: still pending, still in the outbox.
    for _ in range(100):
        if stored_bodies(chat):
            break
        alice.wait_for_timeout(100)
    assert stored_bodies(chat) == ["did this go through?"]
    expect(message_with(alice, "did this go through?").locator(".tick")).to_have_attribute("data-state", "pending")

    swallow["on"] = False
    alice.reload()
    expect(message_with(alice, "did this go through?").locator(".tick")).to_have_attribute("data-state", "sent")
    expect(bubbles(alice)).to_have_text(["did this go through?"])
    assert stored_bodies(chat) == ["did this go through?"]


def test_an_outbox_entry_the_server_refuses_is_shown_as_not_sent_and_not_sent_again(people, signed_in):
    """A bad entry in the outbox (here a NUL, which no database stores) must not become a
    reconnect loop: the server answers send.error invalid, the socket stays, and the entry
    waits, marked, for the person to retry or discard it (issue 16, item 4)."""
    alice_user, bob_user = people["alice"], people["bob"]
    chat = direct(alice_user, bob_user)
    alice_context = signed_in("alice")
    alice = open_app(alice_context, f"/c/{chat.pk}")
    expect(alice.locator("#connection")).to_have_attribute("data-state", "online")
    alice.evaluate("""([user, conversation]) => localStorage.setItem(`parley:outbox:${user}`, JSON.stringify([
        {conversation, body: "bad \\u0000 byte", client_msg_id: "bad-entry", created_at: new Date().toISOString()}]))""",
                   [alice_user.pk, chat.pk])
    frames: list[str] = []
    alice.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(str(payload))))
    alice.reload()
    expect(alice.locator("#connection")).to_have_attribute("data-state", "online")
    refused = alice.locator("#message-list .message", has_text="byte")
    expect(refused.locator(".tick")).to_have_attribute("data-state", "failed")
    expect(refused).to_contain_text("Not sent")
    send(alice, "and this one goes")
    expect(message_with(alice, "and this one goes").locator(".tick")).not_to_have_attribute("data-state", "pending")
    assert stored_bodies(chat) == ["and this one goes"]
    assert sum('"bad-entry"' in frame for frame in frames) == 1  # sent once, not on every reconnect
