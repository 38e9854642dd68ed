"""Ticks that mean what they say (issue 14, item 1 and 2): everything a device receives is
acked as delivered at once; `read` moves only over what was on the reader's screen; a busy
conversation opens at its first unread."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from messaging.conversations import do_create_group
from messaging.models import Membership
from receipts.watermarks import do_mark_read

from .conftest import conversation_link, direct, message_with, open_app, seed, send

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

# Rows the reader could see: at least half of the row inside the scroller (reads.js's rule).
VISIBLE_SEQS = """() => {
  const box = document.getElementById("message-scroller").getBoundingClientRect();
  const seen = [];
  for (const row of document.querySelectorAll("#message-list .message[data-seq]")) {
    const r = row.getBoundingClientRect();
    const inside = Math.min(r.bottom, box.bottom) - Math.max(r.top, box.top);
    if (inside >= r.height / 2) seen.push(Number(row.dataset.seq));
  }
  return seen;
}"""


def marks(user, conversation) -> tuple[int, int]:
    membership = Membership.objects.get(user=user, conversation=conversation)
    return membership.delivered_seq, membership.read_seq


def wait_for_read(user, conversation, at_least: int, timeout: float = 10.0) -> int:
    """The stored read_seq once it reached ``at_least`` and stopped moving."""
    deadline = time.monotonic() + timeout
    last, stable = -1, 0
    while time.monotonic() < deadline:
        read = marks(user, conversation)[1]
        stable = stable + 1 if read == last else 0
        last = read
        if read >= at_least and stable >= 5:
            return read
        time.sleep(0.1)
    raise AssertionError(f"read_seq stayed at {last}, expected at least {at_least}")


def test_a_message_sent_while_the_recipient_was_away_shows_delivered_when_their_app_loads_and_read_once_seen(
        people, signed_in):
    alice_user, bob_user = people["alice"], people["bob"]
    chat = direct(alice_user, bob_user)
    alice = open_app(signed_in("alice"), f"/c/{chat.pk}")
    send(alice, "Are you around later?")
    tick = message_with(alice, "Are you around later?").locator(".tick")
    expect(tick).to_have_attribute("data-state", "sent")
    assert marks(bob_user, chat) == (0, 0)

    # Bob logs in later, in a browser that never ran Parley, and stays on the list.
    bob = signed_in("bob").new_page()
    bob.goto("/")
    expect(bob.locator("#connection")).to_have_attribute("data-state", "online")
    expect(tick).to_have_attribute("data-state", "delivered", timeout=1_000)
    expect(conversation_link(bob, "Alice Archer").locator(".unread-badge")).to_have_text("1")
    assert marks(bob_user, chat) == (1, 0)

    # Seen in the list as a preview is not read: the tick stays at delivered.
    bob.wait_for_timeout(1_000)
    expect(tick).to_have_attribute("data-state", "delivered")
    assert marks(bob_user, chat) == (1, 0)

    conversation_link(bob, "Alice Archer").click()
    expect(message_with(bob, "Are you around later?")).to_be_in_viewport()
    expect(tick).to_have_attribute("data-state", "read")
    assert marks(bob_user, chat) == (1, 1)


def test_a_message_that_arrives_while_the_reader_is_scrolled_up_is_read_only_once_scrolled_to(people, signed_in):
    alice_user, bob_user = people["alice"], people["bob"]
    chat = direct(alice_user, bob_user)
    seed(chat, *[(alice_user, f"earlier {n}") for n in range(1, 61)])
    do_mark_read(user=bob_user, conversation_id=chat.pk, seq=60)
    alice = open_app(signed_in("alice"), f"/c/{chat.pk}")
    bob = open_app(signed_in("bob"), f"/c/{chat.pk}")
    expect(message_with(bob, "earlier 60")).to_be_in_viewport()
    bob.locator("#message-scroller").evaluate("el => { el.scrollTop = 0; }")
    expect(bob.get_by_role("button", name="Jump to latest")).to_be_visible()

    send(alice, "psst, down here")
    tick = message_with(alice, "psst, down here").locator(".tick")
    expect(tick).to_have_attribute("data-state", "delivered")
    pill = bob.get_by_role("button", name="1 new message")
    expect(pill).to_be_visible()
    bob.wait_for_timeout(500)
    expect(tick).to_have_attribute("data-state", "delivered")
    assert marks(bob_user, chat) == (61, 60)

    pill.click()
    expect(message_with(bob, "psst, down here")).to_be_in_viewport()
    expect(tick).to_have_attribute("data-state", "read")
    expect(pill).to_be_hidden()


def busy_channel(people):
    """A channel where Bob read the first 4 messages and 125 more came after them."""
    alice_user, bob_user = people["alice"], people["bob"]
    general = do_create_group(creator=alice_user, title="general", member_ids=[bob_user.pk], kind="channel",
                              public=True).conversation
    seed(general, *[(alice_user, f"old news {n}") for n in range(1, 5)])
    do_mark_read(user=bob_user, conversation_id=general.pk, seq=4)
    lines = [(alice_user, f"update {n}") for n in range(1, 126)]
    from messaging.send import do_send_message

    for n, (sender, body) in enumerate(lines):
        do_send_message(sender=sender, conversation_id=general.pk, client_msg_id=f"busy-{n}", body=body)
    return general


def visible_seqs(page: Page) -> list[int]:
    return page.evaluate(VISIBLE_SEQS)


def test_a_conversation_with_125_unread_opens_at_the_divider_and_marks_read_only_what_was_scrolled_into_view(
        people, signed_in):
    bob_user = people["bob"]
    general = busy_channel(people)
    bob = open_app(signed_in("bob"))
    link = conversation_link(bob, "general")
    expect(link.locator(".unread-badge")).to_have_text("99+")
    link.click()

    divider = bob.locator("[data-divider=unread]")
    expect(divider).to_be_in_viewport()
    # The divider sits right above the first unread message (seq 5), with read ones above it.
    expect(bob.locator("[data-divider=unread] + .message")).to_have_attribute("data-seq", "5")
    expect(message_with(bob, "old news 4")).to_be_attached()
    expect(bob.locator("#jump-latest")).to_have_text(re.compile(r"^1\d\d new messages"))

    on_screen = visible_seqs(bob)
    assert on_screen and min(on_screen) <= 5 < max(on_screen) < 40
    read = wait_for_read(bob_user, general, at_least=5)
    assert read == max(on_screen), (read, on_screen)
    expect(link).to_have_accessible_name(re.compile(rf"^general ?, {129 - read} unread\."))

    # Scrolling a few screens down reads those, and only those.
    scroller = bob.locator("#message-scroller")
    for _ in range(3):
        scroller.evaluate("el => { el.scrollTop += el.clientHeight * 0.8; }")
        bob.wait_for_timeout(200)
    further = wait_for_read(bob_user, general, at_least=read + 1)
    assert max(visible_seqs(bob)) == further < 129
    expect(link).to_have_accessible_name(re.compile(rf"^general ?, {129 - further} unread\."))

    # Jumping to the latest skips what is in between: that stays unread, and the badge says so.
    bob.locator("#jump-latest").click()
    expect(message_with(bob, "update 125")).to_be_in_viewport()
    bob.wait_for_timeout(800)
    assert marks(bob_user, general)[1] == further
    expect(link).to_have_accessible_name(re.compile(rf"^general ?, {129 - further} unread\."))
