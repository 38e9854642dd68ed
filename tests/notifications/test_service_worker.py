"""static/sw.js, driven by Node.js through the events a browser fires at a service worker."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import IN_CI

HARNESS = Path(__file__).with_name("sw_harness.js")
SERVICE_WORKER = Path(settings.BASE_DIR) / "static" / "sw.js"


@pytest.fixture(autouse=True)
def offline_path():
    """These tests need no database, cache or keys (overrides the package's fixture)."""


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        if IN_CI:
            pytest.fail("Node.js is required in CI to test static/sw.js", pytrace=False)
        pytest.skip("Node.js not installed")
    return path


def run(node: str, *events: dict, windows: tuple[str, ...] = ()) -> dict:
    scenario = json.dumps({"windows": list(windows), "events": list(events)})
    done = subprocess.run([node, str(HARNESS), str(SERVICE_WORKER), scenario],
                          capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def message(conversation: int, seq: int, body: str) -> dict:
    return {"type": "push", "data": {
        "type": "message", "conversation": conversation, "title": "Team", "body": body, "seq": seq,
        "unread": seq, "url": f"/c/{conversation}", "tag": f"conversation-{conversation}"}}


def close(conversation: int) -> dict:
    return {"type": "push", "data": {"type": "close", "conversation": conversation, "seq": 2, "unread": 0,
                                     "url": f"/c/{conversation}", "tag": f"conversation-{conversation}"}}


def test_a_message_push_shows_a_notification_tagged_with_its_conversation(node):
    result = run(node, message(7, 1, "Alice: hi"))

    assert result["log"] == [["show", "Team", {
        "body": "Alice: hi", "tag": "conversation-7", "renotify": True,
        "timestamp": result["log"][0][2]["timestamp"],
        "data": {"url": "/c/7", "conversation": 7, "seq": 1}}]]


def test_the_newest_push_of_a_conversation_replaces_the_shown_one(node):
    result = run(node, message(7, 1, "one"), message(7, 2, "two"), message(8, 1, "elsewhere"))

    assert result["open"] == ["conversation-7", "conversation-8"]
    assert [entry[2]["body"] for entry in result["log"]] == ["one", "two", "elsewhere"]


def test_a_close_push_closes_that_conversations_notification_only(node):
    result = run(node, message(7, 1, "one"), message(8, 1, "other"), close(7))

    assert result["log"][-1] == ["close", "conversation-7"]
    assert result["open"] == ["conversation-8"]


def test_a_payload_that_is_not_ours_shows_nothing(node):
    result = run(node, {"type": "push", "data": "not json"}, {"type": "push", "data": {"hello": "world"}})

    assert result == {"log": [], "open": []}


def test_a_click_focuses_a_window_already_showing_the_conversation(node):
    result = run(node, {"type": "notificationclick", "data": {"url": "/c/7"}},
                 windows=("https://parley.test/", "https://parley.test/c/7"))

    assert result["log"] == [["dismiss"], ["focus", "https://parley.test/c/7"]]


def test_a_click_opens_the_conversation_when_no_window_shows_it(node):
    result = run(node, {"type": "notificationclick", "data": {"url": "/c/7"}}, windows=("https://parley.test/c/8",))

    assert result["log"] == [["dismiss"], ["open", "https://parley.test/c/7"]]
