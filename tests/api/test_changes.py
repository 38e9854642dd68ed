"""REST of issue 12: editing, deleting, reacting, replying and the change stream's pages
(CONTRACT v1.1). Every new route answers a non-member 404, bad input 400, and never a 500."""
from __future__ import annotations

from urllib.parse import quote

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(make_user, make_group, send):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    message = send(alice, group, "helo @bob")
    return alice, bob, group, message


def test_edit_delete_and_react_answer_the_message_as_it_now_is(api, chat):
    alice, bob, group, message = chat
    edited = api.as_user(alice).patch(f"/api/v1/messages/{message['id']}", {"body": "hello **@bob**"}, format="json")
    assert edited.status_code == 200
    body = edited.json()
    assert (body["body"], body["version"], body["mentions"]) == ("hello **@bob**", 1, [bob.pk])
    assert f'<strong><span class="mention" data-user="{bob.pk}">@bob</span></strong>' in body["html"]
    reacted = api.as_user(bob).post(f"/api/v1/messages/{message['id']}/reactions", {"emoji": ":tada:"}, format="json")
    assert reacted.status_code == 200 and reacted.json()["reactions"] == [{"emoji": "🎉", "count": 1, "users": [bob.pk]}]
    unreacted = api.as_user(bob).delete(f"/api/v1/messages/{message['id']}/reactions/{quote('🎉')}")
    assert unreacted.status_code == 200 and unreacted.json()["reactions"] == []
    by_name = api.as_user(bob).delete(f"/api/v1/messages/{message['id']}/reactions/:tada:")
    assert by_name.status_code == 200 and by_name.json()["version"] == 3  # nothing to take back: no change
    deleted = api.as_user(alice).delete(f"/api/v1/messages/{message['id']}")
    assert deleted.status_code == 200
    assert (deleted.json()["state"], deleted.json()["body"], deleted.json()["html"]) == ("deleted", "", "")


def test_the_change_stream_pages_in_order_with_each_message_as_it_now_is(api, chat):
    alice, bob, group, message = chat
    for body in ("one", "two", "three"):
        api.as_user(alice).patch(f"/api/v1/messages/{message['id']}", {"body": body}, format="json")
    api.as_user(bob).post(f"/api/v1/messages/{message['id']}/reactions", {"emoji": "👍"}, format="json")
    page = api.as_user(bob).get(f"/api/v1/conversations/{group.pk}/changes?after=1&limit=2").json()
    assert [c["change"] for c in page["changes"]] == [2, 3] and page["has_more"] is True
    record = page["changes"][0]
    assert (record["conversation"], record["kind"], record["actor"]) == (group.pk, "edited", alice.pk)
    assert record["message"]["body"] == "three" and record["message"]["version"] == 4  # as it is now
    rest = api.as_user(bob).get(f"/api/v1/conversations/{group.pk}/changes?after=3").json()
    assert [(c["change"], c["kind"]) for c in rest["changes"]] == [(4, "reaction")] and rest["has_more"] is False
    conversation = api.as_user(bob).get(f"/api/v1/conversations/{group.pk}").json()
    assert conversation["last_change"] == 4 and conversation["last_seq"] == 1


def test_a_page_of_changes_holds_at_most_200(api, chat, settings):
    alice, bob, group, message = chat
    settings.PARLEY_PAGE_SIZE_MAX = 500
    response = api.as_user(bob).get(f"/api/v1/conversations/{group.pk}/changes?limit=1000")
    assert response.status_code == 200 and response.json() == {"changes": [], "has_more": False}


def test_every_new_route_is_a_404_to_a_non_member(api, chat, make_user):
    alice, bob, group, message = chat
    stranger = api.as_user(make_user("stranger"))
    mid = message["id"]
    answers = [
        stranger.patch(f"/api/v1/messages/{mid}", {"body": "x"}, format="json"),
        stranger.delete(f"/api/v1/messages/{mid}"),
        stranger.post(f"/api/v1/messages/{mid}/reactions", {"emoji": "👍"}, format="json"),
        stranger.delete(f"/api/v1/messages/{mid}/reactions/{quote('👍')}"),
        stranger.get(f"/api/v1/conversations/{group.pk}/changes"),
        stranger.patch("/api/v1/messages/999999999", {"body": "x"}, format="json"),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)


def test_only_the_sender_edits_and_only_the_sender_or_a_moderator_deletes(api, chat):
    alice, bob, group, message = chat
    assert api.as_user(bob).patch(f"/api/v1/messages/{message['id']}", {"body": "x"}, format="json").status_code == 403
    assert api.as_user(bob).delete(f"/api/v1/messages/{message['id']}").status_code == 403


def test_a_deleted_message_cannot_be_edited_or_reacted_to(api, chat):
    alice, bob, group, message = chat
    api.as_user(alice).delete(f"/api/v1/messages/{message['id']}")
    assert api.as_user(alice).patch(f"/api/v1/messages/{message['id']}", {"body": "x"},
                                    format="json").status_code == 409
    assert api.as_user(bob).post(f"/api/v1/messages/{message['id']}/reactions", {"emoji": "👍"},
                                 format="json").status_code == 409


@pytest.mark.parametrize("payload, field", [
    ({}, "body"), ({"body": ""}, "body"), ({"body": "   "}, "body"), ({"body": 5}, "body"), ({"body": "x" * 4001}, "body"),
])
def test_a_bad_edit_is_a_400_with_field_errors(api, chat, payload, field):
    alice, bob, group, message = chat
    response = api.as_user(alice).patch(f"/api/v1/messages/{message['id']}", payload, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]


@pytest.mark.parametrize("emoji", ["", "a", "👍👍", ":no_such_name:", 1, None])
def test_a_bad_reaction_is_a_400(api, chat, emoji):
    alice, bob, group, message = chat
    response = api.as_user(bob).post(f"/api/v1/messages/{message['id']}/reactions", {"emoji": emoji}, format="json")
    assert response.status_code == 400 and "emoji" in response.json()["fields"]
    assert api.as_user(bob).delete(f"/api/v1/messages/{message['id']}/reactions/abc").status_code == 400


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=0", "after=99999999999999999999"])
def test_a_bad_change_cursor_is_a_400(api, chat, query):
    alice, bob, group, message = chat
    assert api.as_user(bob).get(f"/api/v1/conversations/{group.pk}/changes?{query}").status_code == 400


def test_a_send_may_answer_a_message_and_its_retry_must_answer_the_same_one(api, chat, send):
    alice, bob, group, message = chat
    path = f"/api/v1/conversations/{group.pk}/messages"
    answer = {"client_msg_id": "r1", "body": "yes", "reply_to": message["id"]}
    first = api.as_user(bob).post(path, answer, format="json")
    assert first.status_code == 201
    assert first.json()["message"]["reply_to"]["excerpt"] == "helo @bob"
    assert api.as_user(bob).post(path, answer, format="json").status_code == 200
    other = send(alice, group, "another")
    assert api.as_user(bob).post(path, {**answer, "reply_to": other["id"]}, format="json").status_code == 409
    for bad in ("1", 0, 10**19, True):
        response = api.as_user(bob).post(path, {"client_msg_id": "r2", "body": "x", "reply_to": bad}, format="json")
        assert response.status_code == 400 and "reply_to" in response.json()["fields"]
    response = api.as_user(bob).post(path, {"client_msg_id": "r3", "body": "x", "reply_to": 10**12}, format="json")
    assert response.status_code == 400 and "reply_to" in response.json()["fields"]


def test_unread_mentions_count_in_the_conversation_list(api, chat, send):
    alice, bob, group, message = chat
    send(alice, group, "and again @bob")
    send(alice, group, "no mention")
    (item,) = api.as_user(bob).get("/api/v1/conversations").json()["results"]
    assert (item["me"]["unread"], item["me"]["unread_mentions"]) == (3, 2)
    api.as_user(bob).post(f"/api/v1/conversations/{group.pk}/read", {"seq": 2}, format="json")
    (item,) = api.as_user(bob).get("/api/v1/conversations").json()["results"]
    assert (item["me"]["unread"], item["me"]["unread_mentions"]) == (1, 0)
    assert api.as_user(bob).get(f"/api/v1/conversations/{group.pk}").json()["me"]["unread_mentions"] == 0
