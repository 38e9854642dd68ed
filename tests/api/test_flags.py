import pytest

from messaging.models import Flag


@pytest.fixture
def message(make_user, make_group, send):
    """A message in a group of two: (sender, other member, message payload)."""
    sender, member = make_user(), make_user()
    return sender, member, send(sender, make_group(sender, [member]), body="spammy")


def flag(client, message_id, **payload):
    return client.post(f"/api/v1/messages/{message_id}/flag", payload, format="json")


def test_a_member_flags_a_message_for_the_moderators(api, message):
    _sender, member, msg = message
    response = flag(api.as_user(member), msg["id"], reason="spam", note="buy now links")
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("message", "reason", "note", "status")} == {
        "message": msg["id"], "reason": "spam", "note": "buy now links", "status": "open"}
    assert Flag.objects.get(pk=body["id"]).reporter == member


def test_a_second_open_flag_by_the_same_reporter_is_a_conflict(api, message):
    sender, member, msg = message
    client = api.as_user(member)
    assert flag(client, msg["id"], reason="spam").status_code == 201
    again = flag(client, msg["id"], reason="abuse")
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    assert flag(api.as_user(sender), msg["id"], reason="other").status_code == 201  # others may still flag


def test_a_resolved_flag_does_not_block_a_new_one(api, message):
    _sender, member, msg = message
    client = api.as_user(member)
    flag(client, msg["id"], reason="spam")
    Flag.objects.update(status=Flag.Status.RESOLVED)
    assert flag(client, msg["id"], reason="spam").status_code == 201


@pytest.mark.parametrize("payload, field", [
    ({}, "reason"), ({"reason": "boring"}, "reason"), ({"reason": 1}, "reason"),
    ({"reason": "spam", "note": 5}, "note"), ({"reason": "spam", "note": "n" * 1001}, "note"),
])
def test_bad_flags_are_400_with_field_errors(api, message, payload, field):
    _sender, member, msg = message
    response = flag(api.as_user(member), msg["id"], **payload)
    assert response.status_code == 400 and field in response.json()["fields"]


def test_flagging_a_missing_message_is_a_404(api, make_user):
    assert flag(api.as_user(make_user()), 987654, reason="spam").status_code == 404
