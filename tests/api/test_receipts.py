import pytest
from django.contrib.auth.models import Permission

from messaging import layer


@pytest.fixture
def trio(make_user, make_group):
    """A group of three with nothing sent yet: (owner, first, second, group)."""
    owner, first, second = make_user(), make_user(), make_user()
    return owner, first, second, make_group(owner, [first, second])


def mark(client, conversation, what, **payload):
    return client.post(f"/api/v1/conversations/{conversation.pk}/{what}", payload, format="json")


def test_reading_raises_both_watermarks(api, trio, send):
    owner, first, _second, group = trio
    for _ in range(3):
        send(owner, group)
    response = mark(api.as_user(first), group, "read", seq=2)
    assert response.status_code == 200
    assert response.json() == {"delivered_seq": 2, "read_seq": 2}
    assert api.get(f"/api/v1/conversations/{group.pk}").json()["me"]["unread"] == 1


def test_watermarks_never_move_back_and_stop_at_the_last_seq(api, trio, send):
    owner, first, _second, group = trio
    for _ in range(3):
        send(owner, group)
    client = api.as_user(first)
    mark(client, group, "read", seq=3)
    assert mark(client, group, "read", seq=1).json() == {"delivered_seq": 3, "read_seq": 3}
    assert mark(client, group, "read", seq=2**62).json() == {"delivered_seq": 3, "read_seq": 3}


def test_a_read_advance_is_announced_after_commit(api, trio, send, listen, django_capture_on_commit_callbacks):
    owner, first, _second, group = trio
    send(owner, group)
    room = listen(layer.conversation_group(group.pk))
    with django_capture_on_commit_callbacks(execute=True):
        mark(api.as_user(first), group, "read", seq=1)
    event = room.next()
    assert event["type"] == "conv.receipts"
    assert [(marks["user"], marks["read_seq"]) for marks in event["receipts"]] == [(first.pk, 1)]


def test_a_device_reports_delivery_without_a_socket(api, trio, send, make_device):
    owner, first, _second, group = trio
    for _ in range(2):
        send(owner, group)
    device = make_device(first)
    response = mark(api.as_user(first), group, "delivered", seq=2, device=str(device.pk))
    assert response.status_code == 200
    assert response.json() == {"delivered_seq": 2, "read_seq": 0}


def test_delivery_for_someone_elses_device_is_a_404(api, trio, send, make_device):
    owner, first, second, group = trio
    send(owner, group)
    response = mark(api.as_user(first), group, "delivered", seq=1, device=str(make_device(second).pk))
    assert response.status_code == 404


@pytest.mark.parametrize("what, payload, field", [
    ("read", {}, "seq"),
    ("read", {"seq": -1}, "seq"),
    ("read", {"seq": 2**62 + 1}, "seq"),
    ("read", {"seq": "3"}, "seq"),
    ("read", {"seq": 1.5}, "seq"),
    ("read", {"seq": True}, "seq"),
    ("delivered", {"seq": 1}, "device"),
    ("delivered", {"seq": 1, "device": 5}, "device"),
    ("delivered", {"seq": -2, "device": "00000000-0000-0000-0000-000000000000"}, "seq"),
])
def test_bad_receipts_are_400_with_field_errors(api, trio, what, payload, field):
    _owner, first, _second, group = trio
    response = mark(api.as_user(first), group, what, **payload)
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_receipts_list_every_members_watermarks(api, trio, send):
    owner, first, second, group = trio
    for _ in range(2):
        send(owner, group)
    mark(api.as_user(first), group, "read", seq=1)
    response = api.get(f"/api/v1/conversations/{group.pk}/receipts")
    assert response.status_code == 200
    assert sorted((m["user"], m["delivered_seq"], m["read_seq"]) for m in response.json()["members"]) == sorted(
        [(owner.pk, 2, 2), (first.pk, 1, 1), (second.pk, 0, 0)])


def test_message_info_shows_each_recipient_once_under_its_state(api, trio, send, make_device):
    owner, first, second, group = trio
    message = send(owner, group)
    send(owner, group)
    mark(api.as_user(first), group, "read", seq=1)
    mark(api.as_user(second), group, "delivered", seq=1, device=str(make_device(second).pk))
    response = api.as_user(owner).get(f"/api/v1/messages/{message['id']}/info")
    assert response.status_code == 200
    body = response.json()
    assert body["message"]["id"] == message["id"]
    assert sorted((r["user"]["id"], r["state"]) for r in body["recipients"]) == sorted(
        [(first.pk, "read"), (second.pk, "delivered")])
    assert body["counts"] == {"sent": 0, "delivered": 1, "read": 1}
    later = api.get(f"/api/v1/messages/{message['id'] + 1}/info").json()
    assert later["counts"] == {"sent": 2, "delivered": 0, "read": 0}


def test_message_info_is_forbidden_to_members_who_did_not_send_it(api, trio, send):
    owner, first, _second, group = trio
    message = send(owner, group)
    response = api.as_user(first).get(f"/api/v1/messages/{message['id']}/info")
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


def test_moderators_see_message_info_without_being_members(api, trio, send, make_user):
    owner, _first, _second, group = trio
    message = send(owner, group)
    moderator = make_user()
    moderator.user_permissions.add(Permission.objects.get(codename="moderate_message"))
    response = api.as_user(moderator).get(f"/api/v1/messages/{message['id']}/info")
    assert response.status_code == 200
    assert response.json()["counts"]["sent"] == 2


def test_info_on_a_missing_message_is_a_404(api, make_user):
    assert api.as_user(make_user()).get("/api/v1/messages/424242/info").status_code == 404


def test_only_members_see_read_and_delivered_marks_on_members_as_on_receipts(api, make_user, make_group, send):
    """One rule for both endpoints (issue 16, item 10): a public channel's member list is open
    to anyone, but its members' marks are not, exactly as /receipts is 404 to outsiders."""
    owner, reader, outsider = make_user(), make_user(), make_user()
    channel = make_group(owner, [reader], title="open", kind="channel", public=True)
    send(owner, channel)
    api.as_user(reader).post(f"/api/v1/conversations/{channel.pk}/read", {"seq": 1}, format="json")

    assert api.as_user(outsider).get(f"/api/v1/conversations/{channel.pk}/receipts").status_code == 404
    listed = api.as_user(outsider).get(f"/api/v1/conversations/{channel.pk}/members").json()["results"]
    assert {m["user"]["id"] for m in listed} == {owner.pk, reader.pk}
    assert all(m["delivered_seq"] is None and m["read_seq"] is None for m in listed)

    as_member = api.as_user(reader).get(f"/api/v1/conversations/{channel.pk}/members").json()["results"]
    assert {m["user"]["id"]: m["read_seq"] for m in as_member} == {owner.pk: 1, reader.pk: 1}

