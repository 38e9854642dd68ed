"""Every size a client controls is bounded by a PARLEY_* setting: at the limit it is accepted,
one past it gets a clear answer (never a 500, never unbounded work). docs/security.md lists them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


@pytest.fixture
def pair(make_user, make_group):
    owner, member = make_user(), make_user()
    return owner, member, make_group(owner, [member])


def test_the_body_limit_is_a_setting(api, pair, settings):
    settings.PARLEY_MAX_BODY_LENGTH = 10
    owner, _, group = pair
    client = api.as_user(owner)
    post = lambda key, body: client.post(f"/api/v1/conversations/{group.pk}/messages",  # noqa: E731
                                         {"client_msg_id": key, "body": body}, format="json")
    assert post("a", "x" * 10).status_code == 201
    response = post("b", "x" * 11)
    assert response.status_code == 400 and "body" in response.json()["fields"]


def test_the_title_limit_is_a_setting(api, make_user, settings):
    settings.PARLEY_MAX_TITLE_LENGTH = 8
    client = api.as_user(make_user())
    create = lambda title: client.post("/api/v1/conversations",  # noqa: E731
                                       {"kind": "channel", "title": title}, format="json")
    assert create("t" * 8).status_code == 201
    response = create("t" * 9)
    assert response.status_code == 400 and "title" in response.json()["fields"]


def test_the_members_per_request_limit_is_a_setting(api, make_user, settings):
    settings.PARLEY_MAX_MEMBERS_PER_REQUEST = 3
    others = [make_user().pk for _ in range(4)]
    client = api.as_user(make_user())
    create = lambda members: client.post("/api/v1/conversations",  # noqa: E731
                                         {"kind": "group", "title": "g", "members": members}, format="json")
    assert create(others[:3]).status_code == 201
    assert create(others).status_code == 400
    group = create([]).json()["id"]
    response = client.post(f"/api/v1/conversations/{group}/members", {"user_ids": others}, format="json")
    assert response.status_code == 400 and "user_ids" in response.json()["fields"]


def test_the_number_of_devices_is_a_setting(api, make_user, settings):
    settings.PARLEY_MAX_DEVICES_PER_USER = 2
    client = api.as_user(make_user())
    assert [client.post("/api/v1/devices", {}, format="json").status_code for _ in range(3)] == [201, 201, 409]


def test_history_pages_are_capped_by_a_setting(api, pair, settings):
    from messaging.send import do_send_message

    settings.PARLEY_PAGE_SIZE_MAX = 3
    owner, _, group = pair
    for i in range(5):
        do_send_message(sender=owner, conversation_id=group.pk, client_msg_id=f"h{i}", body="hi")
    page = api.as_user(owner).get(f"/api/v1/conversations/{group.pk}/messages?limit=1000").json()
    assert (len(page["messages"]), page["has_more"]) == (3, True)


def test_user_search_results_are_capped_by_a_setting(api, make_user, settings):
    settings.PARLEY_USER_SEARCH_LIMIT = 2
    for i in range(4):
        make_user(f"findme{i}")
    assert len(api.as_user(make_user()).get("/api/v1/users?search=findme").json()["results"]) == 2


@pytest.mark.django_db(transaction=True)
async def test_socket_limits_are_settings_body_frame_size_and_replay_page(
        make_user, make_device, make_group, open_socket, settings):
    from messaging.send import do_send_message

    owner = await database_sync_to_async(make_user)()
    group = await database_sync_to_async(make_group)(owner)
    device = await database_sync_to_async(make_device)(owner)
    for i in range(4):
        await database_sync_to_async(do_send_message)(sender=owner, conversation_id=group.pk,
                                                      client_msg_id=f"s{i}", body="hi")
    settings.PARLEY_MAX_BODY_LENGTH = 10
    settings.PARLEY_WS_MAX_FRAME_BYTES = 300
    settings.PARLEY_REPLAY_PAGE_SIZE = 3
    socket = await open_socket(owner, device)

    await socket.send({"type": "send", "conversation": group.pk, "client_msg_id": "ok", "body": "x" * 10})
    assert (await socket.recv_type("send.ok", "send.error"))["type"] == "send.ok"
    await socket.send({"type": "send", "conversation": group.pk, "client_msg_id": "long", "body": "x" * 11})
    refused = await socket.recv_type("send.ok", "send.error")
    assert (refused["type"], refused["code"]) == ("send.error", "invalid")

    await socket.send_raw('{"type": "ping", "pad": "' + "x" * 300 + '"}')
    assert (await socket.recv_type("error"))["code"] == "too_large"

    await socket.send({"type": "replay", "conversation": group.pk, "after_seq": 0, "limit": 10**9})
    page = await socket.recv_type("messages")
    assert (len(page["messages"]), page["has_more"]) == (3, True)
    await socket.close()


def test_every_limit_in_the_security_docs_is_a_setting():
    """The limits table of docs/security.md names real settings, and the main ones are in it."""
    documented = set(re.findall(r"^\| `(PARLEY_[A-Z_]+)` \|", DOC.read_text(), flags=re.M))
    assert not [name for name in documented if not hasattr(django_settings, name)]
    assert {"PARLEY_RATE_SEND", "PARLEY_MAX_BODY_LENGTH", "PARLEY_RATE_WS_FRAMES", "PARLEY_RATE_LOGIN",
            "PARLEY_WS_MAX_FRAME_BYTES", "PARLEY_MAX_DEVICES_PER_USER"} <= documented
