import pytest
from django.test import override_settings

from messaging.conversations import do_create_group


def create(client, **payload):
    return client.post("/api/v1/conversations", payload, format="json")


def test_a_direct_conversation_is_created_once_per_pair(api, make_user):
    alice, bob = make_user(), make_user()
    first = create(api.as_user(alice), kind="direct", members=[bob.pk])
    assert first.status_code == 201
    body = first.json()
    assert (body["kind"], body["member_count"], body["last_seq"]) == ("direct", 2, 0)
    assert body["me"] == {"role": "member", "delivered_seq": 0, "read_seq": 0, "unread": 0, "unread_mentions": 0,
                          "notify": "all", "muted_until": None, "can": []}
    again = create(api, kind="direct", members=[bob.pk])
    assert (again.status_code, again.json()["id"]) == (200, body["id"])
    from_bob = create(api.as_user(bob), kind="direct", members=[alice.pk])
    assert (from_bob.status_code, from_bob.json()["id"]) == (200, body["id"])


def test_a_group_makes_its_creator_the_owner(api, make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    response = create(api.as_user(alice), kind="group", title="Team", members=[bob.pk, carol.pk, alice.pk])
    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["title"], body["public"], body["member_count"]) == ("group", "Team", False, 3)
    assert body["me"]["role"] == "owner"


def test_a_public_channel_is_created_with_its_title(api, make_user):
    response = create(api.as_user(make_user()), kind="channel", title="announcements", public=True)
    assert response.status_code == 201
    assert (response.json()["kind"], response.json()["public"], response.json()["member_count"]) == (
        "channel", True, 1)


@pytest.mark.parametrize("payload, field", [
    ({"kind": "broadcast", "members": []}, "kind"),
    ({"members": []}, "kind"),
    ({"kind": 1}, "kind"),
    ({"kind": "direct", "members": []}, "members"),
    ({"kind": "direct", "members": [1, 2]}, "members"),
    ({"kind": "direct", "members": ["2"]}, "members.0"),
    ({"kind": "direct", "members": "2"}, "members"),
    ({"kind": "group", "members": [True]}, "members.0"),
    ({"kind": "group", "title": 5, "members": []}, "title"),
    ({"kind": "group", "title": "t" * 201, "members": []}, "title"),
    ({"kind": "group", "public": True}, "public"),
    ({"kind": "channel", "public": "true", "title": "x"}, "public"),
    ({"kind": "channel", "public": True}, "title"),
    ({"kind": "channel", "public": True, "title": "   "}, "title"),
])
def test_bad_conversation_requests_are_400_with_field_errors(api, make_user, payload, field):
    response = create(api.as_user(make_user()), **payload)
    assert response.status_code == 400
    assert field in response.json()["fields"], response.json()


def test_unknown_users_are_400(api, make_user):
    inactive = make_user(is_active=False)
    for members in ([987654321], [inactive.pk]):
        response = create(api.as_user(make_user()), kind="group", title="t", members=members)
        assert response.status_code == 400
        assert "members" in response.json()["fields"]


def test_a_direct_conversation_with_yourself_is_400(api, make_user):
    me = make_user()
    assert create(api.as_user(me), kind="direct", members=[me.pk]).status_code == 400


@override_settings(PARLEY_MAX_MEMBERS_PER_REQUEST=2)
def test_too_many_members_in_one_request_is_400(api, make_user):
    users = [make_user() for _ in range(3)]
    response = create(api.as_user(make_user()), kind="group", title="t", members=[u.pk for u in users])
    assert response.status_code == 400 and "members" in response.json()["fields"]


def test_malformed_json_is_400(api, make_user):
    response = api.as_user(make_user()).post("/api/v1/conversations", '{"kind": "gro', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_a_json_body_that_is_not_an_object_is_400(api, make_user):
    response = api.as_user(make_user()).post("/api/v1/conversations", [1, 2], format="json")
    assert response.status_code == 400


def test_form_encoded_bodies_are_refused(api, make_user):
    response = api.as_user(make_user()).post("/api/v1/conversations", {"kind": "group"})  # multipart
    assert response.status_code == 415


def test_my_conversations_are_listed_most_recent_activity_first(api, make_user, make_group, send):
    me, other = make_user(), make_user()
    older = make_group(me, [other], title="older")
    make_group(me, [other], title="newer")  # made later, so newer until the message below
    make_group(other, [], title="not mine")
    send(other, older)
    response = api.as_user(me).get("/api/v1/conversations")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [c["title"] for c in body["results"]] == ["older", "newer"]
    assert body["results"][0]["me"]["unread"] == 1


def test_the_conversation_list_pages(api, make_user, make_group):
    me = make_user()
    for n in range(3):
        make_group(me, title=f"g{n}")
    client = api.as_user(me)
    first = client.get("/api/v1/conversations?limit=2").json()
    assert (first["count"], len(first["results"]), first["previous"]) == (3, 2, None)
    second = client.get(first["next"]).json()
    assert (len(second["results"]), second["next"]) == (1, None)
    assert client.get(f"/api/v1/conversations?offset={10**30}").json()["results"] == []


@override_settings(PARLEY_CONVERSATIONS_PAGE_SIZE=1, PARLEY_PAGE_SIZE_MAX=2)
def test_the_conversation_page_size_comes_from_settings_and_is_capped(api, make_user, make_group):
    me = make_user()
    for n in range(3):
        make_group(me, title=f"g{n}")
    client = api.as_user(me)
    assert len(client.get("/api/v1/conversations").json()["results"]) == 1
    assert len(client.get("/api/v1/conversations?limit=500").json()["results"]) == 2


def test_a_member_sees_a_conversation(api, make_user, make_group):
    me = make_user()
    group = make_group(me, title="mine")
    response = api.as_user(me).get(f"/api/v1/conversations/{group.pk}")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["me"]["role"]) == (group.pk, "owner")


def test_a_public_channel_is_visible_to_non_members_without_me(api, make_user, make_group):
    channel = make_group(make_user(), title="lobby", kind="channel", public=True)
    response = api.as_user(make_user()).get(f"/api/v1/conversations/{channel.pk}")
    assert response.status_code == 200
    assert response.json()["me"] is None


@pytest.mark.parametrize("conversation_id", ["999999999", "999999999999999999"])
def test_a_missing_conversation_is_a_404(api, make_user, conversation_id):
    response = api.as_user(make_user()).get(f"/api/v1/conversations/{conversation_id}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["abc", "-1", "1" * 30])
def test_a_conversation_id_that_cannot_be_one_is_a_json_404(api, make_user, path):
    response = api.as_user(make_user()).get(f"/api/v1/conversations/{path}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_members_are_listed_with_their_watermarks(api, make_user, make_group):
    owner, member = make_user(), make_user(display_name="Bee")
    group = make_group(owner, [member])
    response = api.as_user(member).get(f"/api/v1/conversations/{group.pk}/members")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [(m["user"]["id"], m["role"]) for m in body["results"]] == [(owner.pk, "owner"), (member.pk, "member")]
    assert body["results"][1]["user"]["display_name"] == "Bee"
    assert {"joined_at", "delivered_seq", "read_seq"} <= set(body["results"][0])


def test_public_channel_members_are_visible_to_non_members(api, make_user, make_group):
    channel = make_group(make_user(), title="lobby", kind="channel", public=True)
    assert api.as_user(make_user()).get(f"/api/v1/conversations/{channel.pk}/members").status_code == 200


def test_members_carry_a_presence_snapshot_for_members_of_small_conversations_only(api, make_user, make_group,
                                                                                settings):
    from django.core.cache import cache

    from messaging import presence

    cache.clear()
    owner, member = make_user(), make_user()
    group = make_group(owner, [member])
    presence.change_count(owner.pk, 1)  # owner has a greeted socket somewhere
    online = {m["user"]["id"]: m["online"]
              for m in api.as_user(member).get(f"/api/v1/conversations/{group.pk}/members").json()["results"]}
    assert online == {owner.pk: True, member.pk: False}

    # Not where presence frames don't go: to a non-member of a public channel, or in a large one.
    channel = make_group(owner, [member], title="lobby", kind="channel", public=True)
    outsider = api.as_user(make_user()).get(f"/api/v1/conversations/{channel.pk}/members").json()
    assert {m["online"] for m in outsider["results"]} == {None}
    settings.PARLEY_LARGE_CHANNEL_THRESHOLD = 2
    large = api.as_user(member).get(f"/api/v1/conversations/{group.pk}/members").json()
    assert {m["online"] for m in large["results"]} == {None}
    cache.clear()


def test_an_owner_adds_members(api, make_user, make_group):
    owner, newcomer, present = make_user(), make_user(), make_user()
    group = make_group(owner, [present])
    response = api.as_user(owner).post(f"/api/v1/conversations/{group.pk}/members",
                                       {"user_ids": [newcomer.pk, present.pk]}, format="json")
    assert response.status_code == 200
    assert response.json() == {"added": [newcomer.pk]}
    assert api.get(f"/api/v1/conversations/{group.pk}").json()["member_count"] == 3


def test_a_plain_member_cannot_add_members(api, make_user, make_group):
    owner, member = make_user(), make_user()
    group = make_group(owner, [member])
    response = api.as_user(member).post(f"/api/v1/conversations/{group.pk}/members",
                                        {"user_ids": [make_user().pk]}, format="json")
    assert response.status_code == 403


@pytest.mark.parametrize("payload, field", [
    ({}, "user_ids"), ({"user_ids": []}, "user_ids"), ({"user_ids": ["1"]}, "user_ids.0"),
    ({"user_ids": [123456789]}, "user_ids"),
])
def test_adding_bad_user_ids_is_400(api, make_user, make_group, payload, field):
    owner = make_user()
    group = make_group(owner)
    response = api.as_user(owner).post(f"/api/v1/conversations/{group.pk}/members", payload, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]


def test_a_member_leaves(api, make_user, make_group):
    owner, member = make_user(), make_user()
    group = make_group(owner, [member])
    client = api.as_user(member)
    assert client.delete(f"/api/v1/conversations/{group.pk}/members/{member.pk}").status_code == 204
    assert client.get(f"/api/v1/conversations/{group.pk}").status_code == 404


def test_an_owner_removes_a_member_but_a_member_cannot(api, make_user, make_group):
    owner, first, second = make_user(), make_user(), make_user()
    group = make_group(owner, [first, second])
    assert api.as_user(first).delete(f"/api/v1/conversations/{group.pk}/members/{second.pk}").status_code == 403
    assert api.as_user(owner).delete(f"/api/v1/conversations/{group.pk}/members/{second.pk}").status_code == 204
    assert api.delete(f"/api/v1/conversations/{group.pk}/members/{second.pk}").status_code == 404


def test_joining_a_public_channel(api, make_user, make_group):
    channel = make_group(make_user(), title="lobby", kind="channel", public=True)
    client = api.as_user(make_user())
    joined = client.post(f"/api/v1/conversations/{channel.pk}/join")
    assert joined.status_code == 201
    assert (joined.json()["member_count"], joined.json()["me"]["role"]) == (2, "member")
    assert client.post(f"/api/v1/conversations/{channel.pk}/join").status_code == 200


@pytest.mark.parametrize("kind, public", [("channel", False), ("group", False)])
def test_private_conversations_cannot_be_joined(api, make_user, kind, public):
    conversation = do_create_group(creator=make_user(), title="secret", member_ids=[], kind=kind,
                                   public=public).conversation
    assert api.as_user(make_user()).post(f"/api/v1/conversations/{conversation.pk}/join").status_code == 404


def test_conversations_need_authentication(api):
    assert api.get("/api/v1/conversations").status_code == 401
    assert api.post("/api/v1/conversations", {"kind": "group"}, format="json").status_code == 401
