"""Stored cross-site scripting: what users write comes back as text, in JSON and in every page."""
from __future__ import annotations

import html

import pytest

from messaging.moderation import do_flag_message
from messaging.send import do_send_message

PAYLOADS = [
    "<script>alert('parley')</script>",
    '"><img src=x onerror=alert(1)>',
    "</script><svg onload=alert(1)>",
    "javascript:alert(1)//",
]
# Markup that must never reach a page as markup.
RAW = ["<script>alert(", "<img src=x", "<svg onload", "</script><svg"]


@pytest.fixture
def stored(make_user, make_group, make_device):
    """Every payload in every field users control that others see."""
    author = make_user("mallory", display_name=PAYLOADS[1])
    admin = make_user("admin", is_staff=True, is_superuser=True, display_name=PAYLOADS[2])
    group = make_group(author, [admin], title=PAYLOADS[0])
    messages = [do_send_message(sender=author, conversation_id=group.pk, client_msg_id=f"x{i}", body=body).message
                for i, body in enumerate(PAYLOADS)]
    do_flag_message(reporter=admin, message_id=messages[0].pk, reason="other", note=PAYLOADS[3])
    make_device(author, name=PAYLOADS[0])
    return {"author": author, "admin": admin, "group": group, "messages": messages}


def test_the_api_returns_payloads_verbatim_as_json_text(api, stored):
    client = api.as_user(stored["admin"])
    group = stored["group"]
    page = client.get(f"/api/v1/conversations/{group.pk}/messages")
    assert page["Content-Type"] == "application/json"
    assert [m["body"] for m in page.json()["messages"]] == PAYLOADS
    assert page.json()["messages"][0]["sender"]["display_name"] == PAYLOADS[1]
    assert client.get(f"/api/v1/conversations/{group.pk}").json()["title"] == PAYLOADS[0]
    assert client.get("/api/v1/moderation/flags").json()["results"][0]["note"] == PAYLOADS[3]
    assert api.as_user(stored["author"]).get("/api/v1/devices").json()[0]["name"] == PAYLOADS[0]


def pages(stored) -> list[str]:
    message = stored["messages"][0]
    return [
        "/", f"/c/{stored['group'].pk}", "/moderation", "/api/v1/docs",
        "/admin/messaging/message/", f"/admin/messaging/message/{message.pk}/change/",
        "/admin/messaging/conversation/", f"/admin/messaging/conversation/{stored['group'].pk}/change/",
        "/admin/messaging/flag/", "/admin/messaging/user/", "/admin/messaging/device/",
    ]


def test_every_page_renders_the_payloads_as_text(client, stored):
    client.force_login(stored["admin"])
    shown = set()
    for path in pages(stored):
        response = client.get(path)
        assert response.status_code == 200, path
        text = response.content.decode()
        assert not [raw for raw in RAW if raw in text], path
        shown |= {p for p in PAYLOADS if html.escape(p) in text or html.escape(p, quote=False) in text}
    assert shown >= set(PAYLOADS[:3])  # the pages did show them, as text
