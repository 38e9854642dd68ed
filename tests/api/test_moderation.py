"""The moderators' REST API (CONTRACT, "Moderation") and what a removal leaves behind."""
from __future__ import annotations

import pytest

from messaging import layer
from messaging.models import Flag, Message, ModerationDecision

SECRET = "buy followers at spam.example"


@pytest.fixture
def moderator(make_moderator):
    return make_moderator(display_name="Morgan")


@pytest.fixture
def reported(api, make_user, make_group, send):
    """A group of three where one member reported the sender's message."""
    sender, reporter, bystander = make_user(), make_user(), make_user()
    group = make_group(sender, [reporter, bystander], title="book club")
    send(sender, group, body="hello")
    message = send(sender, group, body=SECRET)
    flag = api.as_user(reporter).post(f"/api/v1/messages/{message['id']}/flag", {"reason": "spam", "note": "ads"},
                                      format="json").json()
    api.credentials()
    return {"sender": sender, "reporter": reporter, "bystander": bystander, "group": group,
            "message": message, "flag": flag}


def resolve(client, flag_id, **payload):
    return client.post(f"/api/v1/moderation/flags/{flag_id}/resolve", payload, format="json")


def test_the_queue_lists_open_flags_with_message_conversation_and_reporter(api, moderator, reported):
    response = api.as_user(moderator).get("/api/v1/moderation/flags")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    (item,) = body["results"]
    assert (item["id"], item["reason"], item["note"], item["status"], item["decision"]) == (
        reported["flag"]["id"], "spam", "ads", "open", None)
    assert item["message"] == reported["message"] and item["evidence"] == SECRET
    assert item["reporter"]["id"] == reported["reporter"].pk
    assert (item["conversation"]["id"], item["conversation"]["title"]) == (reported["group"].pk, "book club")


def test_removing_through_the_queue_tombstones_the_message_and_tells_the_members(
        api, moderator, reported, listen, django_capture_on_commit_callbacks):
    members = listen(layer.conversation_group(reported["group"].pk))
    with django_capture_on_commit_callbacks(execute=True):
        response = resolve(api.as_user(moderator), reported["flag"]["id"], action="remove_message", note="spam")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["decision"]["action"], body["decision"]["note"]) == (
        "resolved", "remove_message", "spam")
    assert body["decision"]["moderator"]["display_name"] == "Morgan"
    assert (body["message"]["state"], body["message"]["body"], body["evidence"]) == ("removed", "", SECRET)
    change, removed = members.next(), members.next()
    assert (change["type"], change["change"], change["record"]["kind"]) == ("conv.change", 1, "removed")
    assert (change["record"]["message"]["state"], change["record"]["message"]["body"]) == ("removed", "")
    assert (removed["type"], removed["id"], removed["seq"]) == ("conv.removed", reported["message"]["id"], 2)


def test_a_removed_message_is_gone_from_every_members_view_and_only_the_queue_keeps_it(
        api, moderator, reported):
    resolve(api.as_user(moderator), reported["flag"]["id"], action="remove_message")
    group, message = reported["group"], reported["message"]
    sender, bystander = reported["sender"], reported["bystander"]  # even its author does not get it back
    views = [api.as_user(user).get(path) for user, path in (
        (sender, f"/api/v1/conversations/{group.pk}/messages"),
        (sender, f"/api/v1/conversations/{group.pk}/messages?before_seq=3"),
        (sender, f"/api/v1/messages/{message['id']}/info"),
        (sender, f"/api/v1/conversations/{group.pk}/receipts"),
        (sender, "/api/v1/conversations"),
        (bystander, f"/api/v1/conversations/{group.pk}/messages"),
        (moderator, f"/api/v1/messages/{message['id']}/info"),
    )]
    assert all(response.status_code == 200 for response in views)
    assert not [r.request["PATH_INFO"] for r in views if "spam.example" in r.content.decode()]
    info = views[2].json()["message"]
    assert (info["state"], info["body"]) == ("removed", "")
    queue = api.as_user(moderator).get("/api/v1/moderation/flags?status=resolved").json()["results"]
    assert [item["evidence"] for item in queue] == [SECRET]


def test_dismissing_leaves_the_message_and_moves_the_flag_to_resolved(api, moderator, reported):
    client = api.as_user(moderator)
    assert resolve(client, reported["flag"]["id"], action="dismiss").status_code == 200
    assert client.get("/api/v1/moderation/flags").json()["results"] == []
    (item,) = client.get("/api/v1/moderation/flags?status=resolved").json()["results"]
    assert item["decision"]["action"] == "dismiss" and item["message"]["body"] == SECRET


def test_open_flags_are_a_queue_oldest_first_and_resolved_ones_latest_first(api, moderator, reported, send):
    group, reporter = reported["group"], reported["reporter"]
    later = send(reported["sender"], group, body="another")
    second = api.as_user(reporter).post(f"/api/v1/messages/{later['id']}/flag", {"reason": "other"},
                                        format="json").json()
    client = api.as_user(moderator)
    assert [f["id"] for f in client.get("/api/v1/moderation/flags").json()["results"]] == [
        reported["flag"]["id"], second["id"]]
    resolve(client, reported["flag"]["id"], action="dismiss")
    resolve(client, second["id"], action="dismiss")
    assert [f["id"] for f in client.get("/api/v1/moderation/flags?status=resolved").json()["results"]] == [
        second["id"], reported["flag"]["id"]]
    page = client.get("/api/v1/moderation/flags?status=resolved&limit=1").json()
    assert (page["count"], len(page["results"]), page["next"] is not None) == (2, 1, True)


def test_a_flag_is_decided_once(api, moderator, reported):
    client = api.as_user(moderator)
    resolve(client, reported["flag"]["id"], action="dismiss")
    again = resolve(client, reported["flag"]["id"], action="remove_message")
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    assert ModerationDecision.objects.count() == 1


@pytest.mark.parametrize("payload, field", [
    ({}, "action"), ({"action": "ban"}, "action"), ({"action": "dismiss", "note": 5}, "note"),
    ({"action": "dismiss", "note": "n" * 1001}, "note"),
])
def test_bad_decisions_are_400_with_field_errors(api, moderator, reported, payload, field):
    response = resolve(api.as_user(moderator), reported["flag"]["id"], **payload)
    assert response.status_code == 400 and field in response.json()["fields"]


def test_bad_queue_filters_are_400_and_missing_flags_404(api, moderator):
    client = api.as_user(moderator)
    assert client.get("/api/v1/moderation/flags?status=closed").status_code == 400
    assert resolve(client, 10**12, action="dismiss").status_code == 404


def test_members_get_403_and_strangers_401_from_every_moderation_endpoint(api, reported):
    flag, sender = reported["flag"]["id"], reported["sender"]
    calls = [
        ("get", "/api/v1/moderation/flags", None),
        ("post", f"/api/v1/moderation/flags/{flag}/resolve", {"action": "remove_message"}),
        ("post", "/api/v1/moderation/flags/999999/resolve", {"action": "dismiss"}),
        ("put", f"/api/v1/moderation/users/{sender.pk}/suspension", {"suspended": True}),
        ("put", f"/api/v1/moderation/conversations/{reported['group'].pk}/slow-mode", {"seconds": 10}),
    ]
    for method, path, payload in calls:
        assert getattr(api, method)(path, payload, format="json").status_code == 401
    member = api.as_user(reported["reporter"])
    for method, path, payload in calls:
        response = getattr(member, method)(path, payload, format="json")
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), path
    assert Flag.objects.get().status == "open" and not Message.objects.filter(state="removed").exists()


def test_a_moderator_suspends_and_reinstates_a_user(api, moderator, reported):
    client, sender, group = api.as_user(moderator), reported["sender"], reported["group"]
    path = f"/api/v1/moderation/users/{sender.pk}/suspension"
    response = client.put(path, {"suspended": True, "note": "spam wave"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["user"]["id"], body["suspended"], body["suspended_at"] is not None) == (sender.pk, True, True)
    refused = api.as_user(sender).post(f"/api/v1/conversations/{group.pk}/messages",
                                       {"client_msg_id": "after", "body": "hi"}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert api.as_user(sender).get(f"/api/v1/conversations/{group.pk}/messages").status_code == 200  # still reads
    lifted = api.as_user(moderator).put(path, {"suspended": False}, format="json").json()
    assert (lifted["suspended"], lifted["suspended_at"]) == (False, None)
    assert api.as_user(sender).post(f"/api/v1/conversations/{group.pk}/messages",
                                    {"client_msg_id": "after", "body": "hi"}, format="json").status_code == 201


def test_a_suspended_user_makes_no_write_but_reading_and_leaving(api, moderator, reported, make_group, make_user):
    """Suspension stops every write a user can make (issue 16, item 9), not only sends."""
    sender, group, bystander = reported["sender"], reported["group"], reported["bystander"]
    newcomer = make_user()
    public = make_group(bystander, [], title="lobby", kind="channel", public=True)
    api.as_user(moderator).put(f"/api/v1/moderation/users/{sender.pk}/suspension", {"suspended": True},
                               format="json")
    client = api.as_user(sender)
    writes = [
        ("post", "/api/v1/conversations", {"kind": "group", "title": "new", "members": [newcomer.pk]}),
        ("post", "/api/v1/conversations", {"kind": "channel", "title": "mine", "public": True}),
        ("post", "/api/v1/conversations", {"kind": "direct", "members": [newcomer.pk]}),
        ("post", f"/api/v1/conversations/{group.pk}/members", {"user_ids": [newcomer.pk]}),
        ("post", f"/api/v1/conversations/{public.pk}/join", None),
        ("post", f"/api/v1/messages/{reported['message']['id']}/flag", {"reason": "spam"}),
    ]
    for method, path, body in writes:
        response = getattr(client, method)(path, body, format="json")
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), (method, path)
    assert not group.memberships.filter(user=newcomer).exists()
    assert client.get(f"/api/v1/conversations/{group.pk}/messages").status_code == 200  # reads
    assert client.post(f"/api/v1/conversations/{group.pk}/read", {"seq": 1}, format="json").status_code == 200
    assert client.delete(f"/api/v1/conversations/{group.pk}/members/{sender.pk}").status_code == 204  # leaves


def test_slow_mode_is_set_by_moderators_shown_on_the_conversation_and_answered_with_429(
        api, moderator, reported):
    group, sender = reported["group"], reported["sender"]
    response = api.as_user(moderator).put(f"/api/v1/moderation/conversations/{group.pk}/slow-mode",
                                          {"seconds": 120, "note": "calm down"}, format="json")
    assert response.status_code == 200 and response.json()["slow_mode_seconds"] == 120
    client = api.as_user(sender)
    assert client.get(f"/api/v1/conversations/{group.pk}").json()["slow_mode_seconds"] == 120
    post = lambda key: client.post(f"/api/v1/conversations/{group.pk}/messages",  # noqa: E731
                                   {"client_msg_id": key, "body": "hi"}, format="json")
    assert post("s1").status_code == 201
    refused = post("s2")
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")
    assert 110 <= int(refused["Retry-After"]) <= 120
    assert post("s1").status_code == 200  # a retry of a stored send is never refused


@pytest.mark.parametrize("payload, field", [({}, "seconds"), ({"seconds": -1}, "seconds"),
                                            ({"seconds": "5"}, "seconds"), ({"seconds": 10**9}, "seconds")])
def test_bad_slow_modes_are_400(api, moderator, reported, payload, field):
    response = api.as_user(moderator).put(f"/api/v1/moderation/conversations/{reported['group'].pk}/slow-mode",
                                          payload, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]


def test_every_decision_is_in_the_read_only_admin_with_the_removed_text(api, client, moderator, reported, make_user):
    resolve(api.as_user(moderator), reported["flag"]["id"], action="remove_message", note="ads again")
    client.force_login(make_user(is_staff=True, is_superuser=True))
    decision = ModerationDecision.objects.get()
    page = client.get(f"/admin/messaging/moderationdecision/{decision.pk}/change/")
    assert page.status_code == 200
    assert SECRET in page.content.decode() and "ads again" in page.content.decode()
    assert b'name="note"' not in page.content  # read-only: no form fields
    assert client.post(f"/admin/messaging/moderationdecision/{decision.pk}/delete/").status_code == 403
    assert client.get("/admin/messaging/moderationdecision/add/").status_code == 403


def test_a_flag_comes_with_its_message_in_context_and_what_the_moderator_may_do(api, moderator, reported, send,
                                                                                 settings):
    settings.PARLEY_MODERATION_CONTEXT_MESSAGES = 1
    send(reported["bystander"], reported["group"], body="after it")
    send(reported["bystander"], reported["group"], body="much later")
    response = api.as_user(moderator).get(f"/api/v1/moderation/flags/{reported['flag']['id']}/context")
    assert response.status_code == 200
    body = response.json()
    assert [m["body"] for m in body["messages"]] == ["hello", SECRET, "after it"]
    assert (body["flagged_seq"], body["sender"]["id"], body["sender_suspended"]) == (2, reported["sender"].pk, False)
    assert body["conversation"]["id"] == reported["group"].pk and body["conversation"]["me"] is None
    assert body["can_open"] is False  # a private group the moderator is not in


def test_only_moderators_see_a_flags_context_and_the_audit_trail(api, reported):
    client = api.as_user(reported["reporter"])
    assert client.get(f"/api/v1/moderation/flags/{reported['flag']['id']}/context").status_code == 403
    assert client.get("/api/v1/moderation/decisions").status_code == 403


def test_the_audit_trail_lists_every_decision_latest_first(api, moderator, reported):
    client = api.as_user(moderator)
    assert resolve(client, reported["flag"]["id"], action="dismiss", note="fine").status_code == 200
    assert client.put(f"/api/v1/moderation/users/{reported['sender'].pk}/suspension",
                      {"suspended": True, "note": "cool off"}, format="json").status_code == 200
    assert client.put(f"/api/v1/moderation/conversations/{reported['group'].pk}/slow-mode",
                      {"seconds": 30}, format="json").status_code == 200
    body = client.get("/api/v1/moderation/decisions").json()
    assert body["count"] == 3
    assert [(d["action"], d["note"]) for d in body["results"]] == [
        ("slow_mode", ""), ("suspend", "cool off"), ("dismiss", "fine")]
    slow, suspend, _dismiss = body["results"]
    assert slow["slow_mode_seconds"] == 30 and slow["conversation"]["id"] == reported["group"].pk
    assert suspend["user"]["id"] == reported["sender"].pk and suspend["moderator"]["display_name"] == "Morgan"
