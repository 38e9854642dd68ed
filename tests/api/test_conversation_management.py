"""Managing a conversation over REST (CONTRACT v1.1, "Conversation settings and management";
issue 13 item 3): rename and topic, roles enforced from one table, leaving, removing, the
member's own notification settings, default channels at signup, and search's endpoint."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Conversation, Membership, User
from messaging.roles import ALLOWED, Action

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user, make_group):
    owner, admin, member, outsider = (make_user(n) for n in ("olga", "adam", "mia", "otto"))
    group = make_group(owner, [admin, member], title="Team")
    Membership.objects.filter(conversation=group, user=admin).update(role="admin")
    return owner, admin, member, outsider, group


def role_of(conversation, user):
    return Membership.objects.filter(conversation=conversation, user=user).values_list("role", flat=True).first()


# --- Rename and topic -------------------------------------------------------------------------

def test_owners_and_admins_rename_and_set_the_topic(api, team):
    owner, admin, _member, _outsider, group = team
    response = api.as_user(owner).patch(f"/api/v1/conversations/{group.pk}",
                                        {"title": "Core team", "topic": "Ship it"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["title"], response.json()["topic"]) == ("Core team", "Ship it")
    response = api.as_user(admin).patch(f"/api/v1/conversations/{group.pk}", {"topic": ""}, format="json")
    assert (response.json()["title"], response.json()["topic"]) == ("Core team", "")


def test_a_plain_member_may_not_rename_and_an_outsider_learns_nothing(api, team):
    _owner, _admin, member, outsider, group = team
    assert api.as_user(member).patch(f"/api/v1/conversations/{group.pk}", {"title": "Mine"},
                                     format="json").status_code == 403
    assert api.as_user(outsider).patch(f"/api/v1/conversations/{group.pk}", {"title": "Mine"},
                                       format="json").status_code == 404
    assert Conversation.objects.get(pk=group.pk).title == "Team"


def test_a_direct_conversation_has_no_title_to_set(api, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    direct = api.as_user(alice).post("/api/v1/conversations", {"kind": "direct", "members": [bob.pk]},
                                     format="json").json()
    response = api.as_user(alice).patch(f"/api/v1/conversations/{direct['id']}", {"title": "Us"}, format="json")
    assert response.status_code == 403
    assert direct["me"]["can"] == []


@pytest.mark.parametrize("body, field", [
    ({"title": 5}, "title"), ({"topic": None}, "topic"), ({"topic": "x" * 501}, "topic"),
    ({"title": "x" * 201}, "title"),
])
def test_bad_settings_are_400_with_the_field(api, team, body, field):
    owner, *_rest, group = team
    response = api.as_user(owner).patch(f"/api/v1/conversations/{group.pk}", body, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]


def test_a_channel_keeps_a_title(api, make_user, make_group):
    owner = make_user()
    channel = make_group(owner, [], title="news", kind="channel", public=True)
    response = api.as_user(owner).patch(f"/api/v1/conversations/{channel.pk}", {"title": "  "}, format="json")
    assert response.status_code == 400 and "title" in response.json()["fields"]


# --- Roles ------------------------------------------------------------------------------------

def test_the_conversation_object_says_what_each_role_may_do(api, team):
    owner, admin, member, _outsider, group = team
    can = {user.username: api.as_user(user).get(f"/api/v1/conversations/{group.pk}").json()["me"]["can"]
           for user in (owner, admin, member)}
    assert can == {
        role_user: [a.value for a in Action if role in ALLOWED[a]]
        for role_user, role in (("olga", "owner"), ("adam", "admin"), ("mia", "member"))
    }
    assert can["mia"] == ["leave"]


def test_removal_needs_a_higher_role_than_the_one_removed(api, team, make_user):
    owner, admin, member, _outsider, group = team
    other_admin = make_user("ada")
    api.as_user(owner).post(f"/api/v1/conversations/{group.pk}/members", {"user_ids": [other_admin.pk]},
                            format="json")
    assert api.as_user(owner).patch(f"/api/v1/conversations/{group.pk}/members/{other_admin.pk}",
                                    {"role": "admin"}, format="json").status_code == 200

    assert api.as_user(member).delete(f"/api/v1/conversations/{group.pk}/members/{admin.pk}").status_code == 403
    assert api.as_user(admin).delete(f"/api/v1/conversations/{group.pk}/members/{other_admin.pk}").status_code == 403
    assert api.as_user(admin).delete(f"/api/v1/conversations/{group.pk}/members/{owner.pk}").status_code == 403
    assert api.as_user(admin).delete(f"/api/v1/conversations/{group.pk}/members/{member.pk}").status_code == 204
    assert api.as_user(owner).delete(f"/api/v1/conversations/{group.pk}/members/{other_admin.pk}").status_code == 204
    assert sorted(Membership.objects.filter(conversation=group).values_list("user__username", flat=True)) == [
        "adam", "olga"]


def test_only_the_owner_changes_roles_and_not_their_own(api, team):
    owner, admin, member, _outsider, group = team
    url = f"/api/v1/conversations/{group.pk}/members/{member.pk}"
    assert api.as_user(admin).patch(url, {"role": "admin"}, format="json").status_code == 403
    response = api.as_user(owner).patch(url, {"role": "admin"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "admin"
    assert api.as_user(member).get(f"/api/v1/conversations/{group.pk}").json()["me"]["role"] == "admin"
    assert api.as_user(owner).patch(f"/api/v1/conversations/{group.pk}/members/{owner.pk}", {"role": "member"},
                                    format="json").status_code == 403
    assert api.as_user(owner).patch(url, {"role": "owner"}, format="json").status_code == 400
    assert role_of(group, owner) == "owner"


def test_an_owner_who_leaves_hands_over_to_the_longest_standing_admin(api, team):
    owner, admin, member, _outsider, group = team
    assert api.as_user(owner).delete(f"/api/v1/conversations/{group.pk}/members/{owner.pk}").status_code == 204
    assert (role_of(group, admin), role_of(group, member), role_of(group, owner)) == ("owner", "member", None)
    assert api.as_user(admin).delete(f"/api/v1/conversations/{group.pk}/members/{admin.pk}").status_code == 204
    assert role_of(group, member) == "owner"
    assert Conversation.objects.get(pk=group.pk).member_count == 1


def test_the_members_list_shows_owners_then_admins_then_members(api, team):
    owner, admin, member, _outsider, group = team
    Membership.objects.filter(conversation=group, user=owner).update(joined_at=timezone.now())  # joined last
    results = api.as_user(member).get(f"/api/v1/conversations/{group.pk}/members").json()["results"]
    assert [(r["user"]["username"], r["role"]) for r in results] == [
        ("olga", "owner"), ("adam", "admin"), ("mia", "member")]


# --- My settings ------------------------------------------------------------------------------

def test_a_member_sets_notify_and_mute_and_sees_them_in_me(api, team):
    _owner, _admin, member, _outsider, group = team
    until = timezone.now() + timedelta(hours=8)
    url = f"/api/v1/conversations/{group.pk}/me"
    response = api.as_user(member).patch(url, {"notify": "mentions", "muted_until": until.isoformat()},
                                         format="json")
    assert response.status_code == 200, response.content
    me = response.json()
    assert me["notify"] == "mentions" and me["muted_until"].startswith(until.strftime("%Y-%m-%dT%H:%M"))
    listed = api.as_user(member).get("/api/v1/conversations").json()["results"][0]["me"]
    assert (listed["notify"], listed["muted_until"]) == (me["notify"], me["muted_until"])

    me = api.as_user(member).patch(url, {"muted_until": None}, format="json").json()
    assert (me["notify"], me["muted_until"]) == ("mentions", None)


@pytest.mark.parametrize("body, field", [
    ({"notify": "some"}, "notify"), ({"notify": 1}, "notify"), ({"muted_until": 1700000000}, "muted_until"),
    ({"muted_until": "tomorrow"}, "muted_until"),
])
def test_bad_notification_settings_are_400(api, team, body, field):
    member, group = team[2], team[4]
    response = api.as_user(member).patch(f"/api/v1/conversations/{group.pk}/me", body, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]


def test_settings_of_a_conversation_not_mine_are_404(api, team):
    outsider, group = team[3], team[4]
    assert api.as_user(outsider).patch(f"/api/v1/conversations/{group.pk}/me", {"notify": "none"},
                                       format="json").status_code == 404


# --- Default channels -------------------------------------------------------------------------

def test_a_new_user_joins_the_default_channels_at_signup(api, make_user, make_group):
    admin = make_user("founder")
    general = make_group(admin, [], title="general", kind="channel", public=True)
    random = make_group(admin, [], title="random", kind="channel", public=True)
    Conversation.objects.filter(pk=general.pk).update(is_default=True)

    response = api.post("/api/v1/auth/signup", {"username": "newbie", "password": "a-Long-pass-123"}, format="json")
    assert response.status_code == 201
    mine = api.as_user(User.objects.get(username="newbie")).get("/api/v1/conversations").json()["results"]
    assert [(c["title"], c["default"], c["member_count"]) for c in mine] == [("general", True, 2)]
    assert not Membership.objects.filter(conversation=random, user__username="newbie").exists()


# --- Search over REST -------------------------------------------------------------------------

def test_search_answers_results_with_their_conversation_and_highlight(api, team):
    from messaging.send import do_send_message

    owner, _admin, member, outsider, group = team
    sent = do_send_message(sender=owner, conversation_id=group.pk, client_msg_id="s1",
                           body="Quarterly numbers are in").message
    body = api.as_user(member).get("/api/v1/search", {"q": "quarterly"}).json()
    assert body["has_more"] is False
    (result,) = body["results"]
    assert result["message"]["id"] == sent.pk
    assert result["conversation"] == {"id": group.pk, "title": "Team", "kind": "group"}
    assert "<mark>" in result["highlight"]
    assert api.as_user(outsider).get("/api/v1/search", {"q": "quarterly"}).json()["results"] == []
    assert api.as_user(outsider).get("/api/v1/search", {"q": "quarterly", "conversation": group.pk}
                                     ).status_code == 404


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "a", "before": "x"}, {"q": "a", "limit": "0"},
                                    {"q": "a", "conversation": "-1"}, {"q": "x" * 201}])
def test_search_refuses_bad_parameters_with_400(api, team, params):
    response = api.as_user(team[0]).get("/api/v1/search", params)
    assert response.status_code == 400


def test_search_is_rate_limited(api, team, settings):
    settings.PARLEY_RATE_SEARCH = "2/m"
    client = api.as_user(team[0])
    statuses = [client.get("/api/v1/search", {"q": "anything"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
