"""Hostile bodies and names render inert in every view (issue 12, "Done when": XSS): the
chat, a reply's quote and the reply bar, the conversation list, message info, the report
dialog, @-autocomplete and the moderation page with its edit history. The pages are opened
with the Content-Security-Policy bypassed, so what is tested is the app's own handling, not
the policy behind it: no script runs (a window flag stays unset, no dialog opens), no element
carries an on* handler, no link goes to javascript:, no iframe, image or foreign script is
created."""
from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from messaging.changes import do_edit_message
from messaging.conversations import do_create_group
from messaging.moderation import do_flag_message
from messaging.send import do_send_message

from .conftest import conversation_link, open_app

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

HOSTILE = [
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned = 'onerror'\">",
    "<iframe src=\"javascript:window.parent.__pwned = 'iframe'\"></iframe>",
    "[click me](javascript:window.__pwned='link') and <a href=\"javascript:window.__pwned='a'\">this</a>",
    "<svg onload=\"window.__pwned = 'svg'\"></svg> <b onmouseover=\"window.__pwned = 'hover'\">hover</b>",
]
EDITED = "<details open ontoggle=\"window.__pwned = 'edit'\">x</details>"

INERT = """() => {
  const found = [];
  if (window.__pwned !== undefined) found.push(`a script ran: ${window.__pwned}`);
  for (const node of document.querySelectorAll("*")) {
    for (const attribute of node.attributes) {
      if (attribute.name.startsWith("on")) found.push(`${node.localName}[${attribute.name}]`);
      if (/^\\s*javascript:/i.test(attribute.value)) found.push(`${node.localName}[${attribute.name}=${attribute.value}]`);
    }
  }
  // The app's own images: the lightbox's (empty until opened) and thumbnails of attachments,
  // served by Parley's file view; any other image came from someone's words.
  const ownImage = (img) => img.matches("[data-lightbox-image]") && !img.getAttribute("src")
    || (img.src && new URL(img.src).origin === location.origin && new URL(img.src).pathname.startsWith("/api/v1/files/"));
  for (const node of document.querySelectorAll("iframe, object, embed, img, svg, frame")) {
    if (!(node.localName === "img" && ownImage(node))) found.push(`a ${node.localName}`);
  }
  const markup = ":not(p, br, em, strong, s, code, pre, blockquote, ul, ol, li, a, span)";
  for (const node of document.querySelectorAll(`.bubble *${markup}, .reply-quote *:not(span), .context-body *`)) {
    found.push(`a ${node.localName} in a message`);
  }
  for (const script of document.querySelectorAll("script")) {
    const ours = script.type === "application/json" || (script.src && new URL(script.src).origin === location.origin);
    if (!ours) found.push(`a foreign script: ${script.outerHTML.slice(0, 80)}`);
  }
  return found;
}"""


def assert_inert(page: Page, where: str) -> None:
    found = page.evaluate(INERT)
    assert not found, f"{where}: {found}"


@pytest.fixture
def hostile(people, make_user):
    """A group where every message is an attack, from a member whose display name is one too."""
    alice, bob = people["alice"], people["bob"]
    mallory = make_user("mallory", display_name="<img src=x onerror=\"window.__pwned='name'\">Mallory")
    group = do_create_group(creator=alice, title="<script>window.__pwned='title'</script>",
                            member_ids=[bob.pk, mallory.pk]).conversation
    sent = [do_send_message(sender=mallory, conversation_id=group.pk, client_msg_id=f"x{n}", body=body).message
            for n, body in enumerate(HOSTILE)]
    do_flag_message(reporter=alice, message_id=sent[1].pk, reason="abuse")
    do_edit_message(editor=mallory, message_id=sent[1].pk, body=EDITED)  # after the report: history
    do_send_message(sender=mallory, conversation_id=group.pk, client_msg_id="reply",
                    body="<img src=x onerror=\"window.__pwned='reply'\"> replying", reply_to=sent[0].pk)
    return group


def test_hostile_bodies_and_names_are_inert_text_in_every_view(hostile, signed_in):
    page = open_app(signed_in("alice", bypass_csp=True))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    link = conversation_link(page, "window.__pwned='title'")
    expect(link.locator(".conversation-preview")).to_contain_text("replying")
    assert_inert(page, "the conversation list")

    link.click()
    messages = page.locator("#message-list .message")
    expect(messages).to_have_count(len(HOSTILE) + 1)
    expect(messages.first.locator(".bubble")).to_have_text(HOSTILE[0])
    expect(messages.nth(1).locator(".bubble")).to_have_text(EDITED)
    expect(messages.nth(3).locator(".bubble")).to_have_text("[click me](javascript:window.__pwned='link') and "
                                                            "<a href=\"javascript:window.__pwned='a'\">this</a>")
    expect(messages.last.locator(".reply-quote")).to_contain_text(HOSTILE[0])
    expect(messages.first.locator(".message-sender")).to_have_text("<img src=x onerror=\"window.__pwned='name'\">Mallory")
    assert_inert(page, "the chat")

    # The reply bar, the report dialog, message info of a reply of mine, @-autocomplete.
    messages.nth(1).hover()
    messages.nth(1).get_by_role("button", name="Reply", exact=True).click()
    expect(page.locator("#reply-bar")).to_contain_text(EDITED)
    assert_inert(page, "the reply bar")
    composer = page.get_by_label("Message", exact=True)
    composer.fill("")
    composer.press_sequentially("answering @mal")
    expect(page.get_by_role("option")).to_have_text(["<img src=x onerror=\"window.__pwned='name'\">Mallory @mallory"])
    assert_inert(page, "the @-list")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    mine = messages.filter(has_text="answering")
    expect(mine.locator(".tick")).to_have_attribute("data-state", re.compile("sent|delivered|read"))
    expect(mine.locator(".reply-quote")).to_contain_text(EDITED)
    mine.hover()
    mine.get_by_role("button", name="Info", exact=True).click()
    expect(page.get_by_role("dialog", name="Message info")).to_contain_text("answering @mallory")
    assert_inert(page, "message info")
    page.keyboard.press("Escape")
    messages.nth(2).hover()
    messages.nth(2).get_by_role("button", name="Report", exact=True).click()
    expect(page.get_by_role("dialog", name="Report message")).to_contain_text(HOSTILE[2])
    assert_inert(page, "the report dialog")
    page.keyboard.press("Escape")
    assert not dialogs

    # The moderators' queue: what was reported, the edit history, the context.
    moderator = signed_in("mod", bypass_csp=True).new_page()
    moderator.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    moderator.goto("/moderation")
    card = moderator.locator(".flag-card")
    expect(card.locator(".flag-context li.flagged .context-body")).to_have_text(HOSTILE[1])
    expect(card.locator(".flag-history li")).to_have_text([re.compile(re.escape(HOSTILE[1])), re.compile(re.escape(EDITED))])
    assert_inert(moderator, "the moderation page")
    assert not dialogs


def test_html_the_server_should_never_send_is_still_inert_in_the_page(people, signed_in):
    """The second wall (richtext.js): even a message whose `html` breaks the server's rules
    (here rewritten on its way to the page, as a bug or a compromised server might send it) is
    copied through the allow-list: its text is kept, its markup and handlers are not."""
    chat = do_create_group(creator=people["alice"], title="Walls", member_ids=[people["bob"].pk]).conversation
    context = signed_in("alice", bypass_csp=True)
    evil = ("<p>kept <em>emphasis</em> <a href=\"javascript:window.__pwned='href'\">js link</a> "
            "<a href=\"https://example.com/\" onclick=\"window.__pwned='click'\">web link</a></p>"
            "<img src=x onerror=\"window.__pwned='img'\"><script>window.__pwned='script'</script>"
            "<span class=\"mention\" data-user=\"x\" onmouseover=\"window.__pwned='span'\">@bob</span>"
            "<iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\"></iframe><style>body{display:none}</style>")

    def rewrite(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_page(message: str | bytes) -> None:
            frame = json.loads(message)
            for item in [frame.get("message")] + list(frame.get("messages") or []):
                if item:
                    item["html"] = evil
            ws.send(json.dumps(frame))

        server.on_message(to_page)

    def rewrite_page(route) -> None:
        response = route.fetch()
        page_of_messages = response.json()
        for item in page_of_messages.get("messages", []):
            item["html"] = evil
        route.fulfill(response=response, json=page_of_messages)

    do_send_message(sender=people["bob"], conversation_id=chat.pk, client_msg_id="evil", body="plain words")
    context.route_web_socket("**/ws/v1/**", rewrite)
    context.route(re.compile(r"/api/v1/conversations/\d+/messages"), rewrite_page)
    page = open_app(context, f"/c/{chat.pk}")
    bubble = page.locator("#message-list .bubble.rich")
    expect(bubble).to_contain_text("kept emphasis js link web link")
    expect(bubble.locator("em")).to_have_text("emphasis")
    expect(bubble.locator("a")).to_have_count(1)
    expect(bubble.locator("a")).to_have_attribute("href", "https://example.com/")
    expect(bubble.locator("a")).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(bubble.locator(".mention")).to_have_text("@bob")
    assert_inert(page, "a chat with rewritten html")
    expect(page.locator("body")).to_be_visible()
