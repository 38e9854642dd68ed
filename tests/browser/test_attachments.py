"""Files in the browser (issue 13, items 1 and 5): paste, pick or drop a file, watch it
upload, send it; the other person sees the thumbnail live, opens it in a lightbox with the
keyboard, and downloads other files from a chip."""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from .a11y import assert_accessible
from .conftest import direct, message_with, open_app, open_conversation, seed

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def png_base64(width: int = 300, height: int = 200) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 140, 90)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


# Makes a File in the page from base64, as the clipboard or a drag would carry it.
MAKE_TRANSFER = """([b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type }));
  return transfer;
}"""


def paste_file(page: Page, b64: str, name: str = "image.png", kind: str = "image/png") -> None:
    page.evaluate("""([b64, name, type]) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], name, { type }));
      const input = document.getElementById("composer-input");
      input.focus();
      input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
    }""", [b64, name, kind])


def thumbnail_loaded(page: Page, locator) -> bool:
    return locator.evaluate("(img) => img.complete && img.naturalWidth > 0")


@pytest.fixture
def chat(people):
    alice, bob = people["alice"], people["bob"]
    conversation = direct(alice, bob)
    seed(conversation, (alice, "I'll send you the screenshot"))
    return conversation


def test_a_pasted_image_reaches_the_other_person_as_a_thumbnail_live_and_opens_in_a_lightbox(chat, signed_in):
    alice = open_app(signed_in("alice", bypass_csp=True))
    bob = open_app(signed_in("bob", bypass_csp=True))
    for page in (alice, bob):
        open_conversation(page, "Bob Baker" if page is alice else "Alice Archer")
        expect(message_with(page, "I'll send you the screenshot")).to_be_visible()

    paste_file(alice, png_base64(), "screenshot.png")
    chip = alice.locator("#attachment-tray .tray-item")
    expect(chip).to_have_attribute("data-state", "ready")
    expect(chip.locator(".tray-thumb")).to_be_visible()
    alice.get_by_label("Message", exact=True).press("Enter")
    expect(alice.locator("#attachment-tray")).to_be_hidden()

    # Bob's open chat shows the thumbnail without a reload, fetched with his session.
    thumbnail = bob.locator("#message-list .attachment-image img")
    expect(thumbnail).to_be_visible()
    expect(thumbnail).to_have_attribute("alt", "screenshot.png")
    bob.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    assert thumbnail.get_attribute("src").endswith("/thumbnail")
    expect(alice.locator("#message-list .attachment-image img")).to_be_visible()

    # The keyboard reaches it: the message list is one Tab stop, Tab goes into the current message.
    bob.locator("#message-list .message").last.focus()
    bob.keyboard.press("Tab")
    opener = bob.get_by_role("button", name="View image screenshot.png")
    expect(opener).to_be_focused()
    bob.keyboard.press("Enter")
    dialog = bob.locator("#lightbox-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("screenshot.png")
    bob.wait_for_function("() => { const img = document.querySelector('[data-lightbox-image]');"
                          " return img.complete && img.naturalWidth === 300; }")
    assert_accessible(bob, "the image lightbox", "dialog[open]")
    bob.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()
    assert_accessible(bob, "a chat with an image")


def test_files_picked_with_the_button_or_dropped_upload_with_progress_and_send_as_download_chips(
        chat, signed_in, tmp_path):
    report = tmp_path / "minutes.pdf"
    report.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    alice = open_app(signed_in("alice", bypass_csp=True))
    bob = open_app(signed_in("bob", bypass_csp=True))
    open_conversation(alice, "Bob Baker")
    open_conversation(bob, "Alice Archer")

    with alice.expect_file_chooser() as chooser:
        alice.get_by_role("button", name="Attach files").click()
    chooser.value.set_files(str(report))
    expect(alice.locator("#attachment-tray .tray-item")).to_have_attribute("data-state", "ready")

    transfer = alice.evaluate_handle(MAKE_TRANSFER, [png_base64(40, 40), "dropped.png", "image/png"])
    alice.dispatch_event("#chat-open", "dragenter", {"dataTransfer": transfer})
    expect(alice.locator("#drop-hint")).to_be_visible()
    alice.dispatch_event("#chat-open", "drop", {"dataTransfer": transfer})
    expect(alice.locator("#drop-hint")).to_be_hidden()
    expect(alice.locator("#attachment-tray .tray-item[data-state=ready]")).to_have_count(2)
    assert_accessible(alice, "the composer with files to send")

    # A file taken back leaves the tray; the other goes with a caption.
    alice.get_by_role("button", name="Remove dropped.png").click()
    expect(alice.locator("#attachment-tray .tray-item")).to_have_count(1)
    box = alice.get_by_label("Message", exact=True)
    box.fill("The minutes")
    box.press("Enter")

    chip = bob.get_by_role("link", name=f"Download minutes.pdf {report.stat().st_size} B")
    expect(chip).to_be_visible()
    expect(message_with(bob, "The minutes")).to_be_visible()
    response = bob.request.get(chip.get_attribute("href"))
    assert response.status == 200
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_file_refused_by_the_server_says_why_and_is_not_sent(chat, signed_in):
    alice = open_app(signed_in("alice", bypass_csp=True))
    open_conversation(alice, "Bob Baker")
    paste_file(alice, base64.b64encode(b"<html><script>alert(1)</script></html>").decode(), "page.html", "text/html")
    chip = alice.locator("#attachment-tray .tray-item")
    expect(chip).to_have_attribute("data-state", "failed")
    expect(chip.locator(".tray-error")).to_contain_text("not allowed")
    alice.get_by_label("Message", exact=True).press("Enter")
    expect(alice.locator("#message-list .attachments")).to_have_count(0)
