"""Browser tests: Debian's Chromium, driven by pytest-playwright, against a real daphne on the
test PostgreSQL database and a private Redis (tests.live), because Django's live_server has
no WebSocket. Run them on their own: ``pytest -m browser tests/browser``.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.live import Gateway, RedisServer

# The sync Playwright API runs an event loop in this thread; the ORM calls the tests make
# between browser steps are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium")
# A public key alone lets the page offer Web Push; with no private key the server sends none.
VAPID_PUBLIC_KEY = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "pw-Parley-123"

expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", pytrace=False)
    return {
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"],
    }


@pytest.fixture(scope="session")
def parley_server(django_db_setup, django_db_blocker):
    """One daphne for the whole run; each test's data is committed (transactional) and flushed after."""
    redis = RedisServer()
    redis.start()
    gateway = Gateway(redis.url, extra_env={
        "DJANGO_SETTINGS_MODULE": "tests.browser.server_settings",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",  # the server keeps Django's guard against blocking calls
        "PARLEY_RECEIPT_COALESCE_MS": "100",
        "PARLEY_VAPID_PUBLIC_KEY": VAPID_PUBLIC_KEY,
        # Every test logs its people in again; the guessing throttles are tested elsewhere.
        "PARLEY_RATE_LOGIN": "10000/m",
        "PARLEY_RATE_SIGNUP": "10000/h",
        # Uploaded files go to a directory of the run's own, never into the project.
        "PARLEY_MEDIA_ROOT": tempfile.mkdtemp(prefix="parley-browser-media-"),
    })
    with django_db_blocker.unblock():
        gateway.start()
    yield gateway
    errors = gateway.stop()
    redis.stop()
    if "Traceback" in errors:
        print(errors[-5000:])


@pytest.fixture(scope="session")
def base_url(parley_server) -> str:
    return parley_server.url


@pytest.fixture(autouse=True)
def quiet_server_before_flush(request):
    """A test's data is flushed (TRUNCATE) when it ends, while the server may still be writing
    what its last sockets did (acks, reads, disconnects): a flush that meets those writes can
    deadlock, leave the data behind and fail every later test. So, once the test's browser
    contexts are closed, wait until no other session of the test database is mid-statement or
    mid-transaction. Set up after ``transactional_db``, so it is torn down before the flush."""
    if "transactional_db" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    from django.db import connection

    busy_sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')")
    quiet_rounds, deadline = 0, time.monotonic() + 10
    while quiet_rounds < 3 and time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(busy_sql)
            quiet_rounds = quiet_rounds + 1 if cursor.fetchone()[0] == 0 else 0
        time.sleep(0.1)


@pytest.fixture
def people(transactional_db, make_user, make_moderator):
    """alice and bob, and a moderator (in the "Moderators" group), with display names."""
    alice = make_user("alice", password=PASSWORD, display_name="Alice Archer")
    bob = make_user("bob", password=PASSWORD, display_name="Bob Baker")
    mod = make_moderator("mod", password=PASSWORD, display_name="Morgan Moderator")
    return {"alice": alice, "bob": bob, "mod": mod}


@pytest.fixture
def signed_in(new_context, base_url):
    """signed_in(username) -> a context with a session (logged in through the REST endpoint)."""

    def open_as(username: str, **context_args) -> BrowserContext:
        context = new_context(**context_args)
        response = context.request.post(f"{base_url}/api/v1/auth/login",
                                         data={"username": username, "password": PASSWORD})
        assert response.status == 200, response.text()
        return context

    return open_as


def open_app(context: BrowserContext, path: str = "/") -> Page:
    page = context.new_page()
    page.goto(path)
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    return page


def conversation_link(page: Page, title: str):
    return page.locator("#conversation-list a[data-conversation]").filter(has_text=title)


def open_conversation(page: Page, title: str, attempts: int = 3) -> None:
    """Click the conversation's row until its chat is open. The list is redrawn when presence
    or a preview changes; a click whose press and release straddle a redraw lands on no row,
    as a person's would (they click again)."""
    for attempt in range(attempts):
        conversation_link(page, title).click()
        try:
            expect(page.locator("#chat-title")).to_have_text(title, timeout=5000)
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise


def tab_to(page: Page, target: Locator, *, backwards: bool = False, at_most: int = 40) -> int:
    """Press Tab (or Shift+Tab) until ``target`` has the focus; returns how many presses it took."""
    for presses in range(1, at_most + 1):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        if target.evaluate("el => el === document.activeElement"):
            return presses
    raise AssertionError(f"{target} not reached in {at_most} Tab presses")


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def bubbles(page: Page):
    return page.locator("#message-list .message .bubble")


def message_with(page: Page, text: str):
    """The message whose bubble says exactly ``text``."""
    exactly = page.locator(".bubble", has_text=re.compile(f"^{re.escape(text)}$"))
    return page.locator("#message-list .message").filter(has=exactly)


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def seed(conversation, *lines: tuple) -> None:
    """Store (sender, body) messages through the one write path, before any page opens."""
    from messaging.send import do_send_message

    for n, (sender, body) in enumerate(lines):
        do_send_message(sender=sender, conversation_id=conversation.pk, client_msg_id=f"seed-{conversation.pk}-{n}",
                        body=body)


def direct(a, b):
    from messaging.conversations import do_get_or_create_direct

    return do_get_or_create_direct(creator=a, other_user_id=b.pk).conversation


def backdate(conversation, days: int, seqs) -> None:
    """Make messages look ``days`` old (for date separators); created_at is otherwise now."""
    from datetime import timedelta

    from django.utils import timezone

    from messaging.models import Message

    for seq in seqs:
        Message.objects.filter(conversation=conversation, seq=seq).update(
            created_at=timezone.now() - timedelta(days=days, minutes=60 - seq))
