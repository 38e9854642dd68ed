import pytest
from django.test import override_settings

from messaging.models import Message


@pytest.fixture
def pair(make_user, make_group):
    """A group of two: (owner, member, group)."""
    owner, member = make_user(), make_user()
    return owner, member, make_group(owner, [member])


def post_message(client, conversation, **payload):
    return client.post(f"/api/v1/conversations/{conversation.pk}/messages", payload, format="json")


def page(client, conversation, query=""):
    response = client.get(f"/api/v1/conversations/{conversation.pk}/messages{query}")
    assert response.status_code == 200, response.json()
    body = response.json()
    return [m["seq"] for m in body["messages"]], body["has_more"]


def test_sending_stores_the_message_with_the_next_seq(api, pair):
    owner, _member, group = pair
    response = post_message(api.as_user(owner), group, client_msg_id="k-1", body="hello")
    assert response.status_code == 201
    body = response.json()
    assert body["duplicate"] is False
    message = body["message"]
    assert {k: message[k] for k in ("conversation", "seq", "body", "client_msg_id", "state")} == {
        "conversation": group.pk, "seq": 1, "body": "hello", "client_msg_id": "k-1", "state": "visible"}
    assert message["sender"] == {"id": owner.pk, "username": owner.username, "display_name": owner.username}
    assert message["id"] == Message.objects.get().pk and message["created_at"].endswith("Z")


def test_a_retry_returns_the_stored_message_and_stores_nothing(api, pair):
    owner, _member, group = pair
    client = api.as_user(owner)
    first = post_message(client, group, client_msg_id="k-1", body="hello").json()["message"]
    retry = post_message(client, group, client_msg_id="k-1", body="hello")
    assert retry.status_code == 200
    assert retry.json()["duplicate"] is True
    assert (retry.json()["message"]["id"], retry.json()["message"]["seq"]) == (first["id"], first["seq"])
    assert Message.objects.count() == 1
    assert post_message(client, group, client_msg_id="k-2", body="next").json()["message"]["seq"] == 2


def test_the_same_key_with_another_body_or_conversation_is_a_conflict(api, make_group, pair):
    owner, member, group = pair
    client = api.as_user(owner)
    post_message(client, group, client_msg_id="k-1", body="hello")
    changed = post_message(client, group, client_msg_id="k-1", body="changed")
    assert (changed.status_code, changed.json()["code"]) == (409, "conflict")
    elsewhere = post_message(client, make_group(owner, [member], title="other"), client_msg_id="k-1", body="hello")
    assert elsewhere.status_code == 409


def test_keys_belong_to_their_sender(api, pair):
    owner, member, group = pair
    post_message(api.as_user(owner), group, client_msg_id="shared", body="a")
    response = post_message(api.as_user(member), group, client_msg_id="shared", body="b")
    assert (response.status_code, response.json()["message"]["seq"]) == (201, 2)


def test_sending_names_the_device_when_it_is_mine(api, pair, make_device):
    owner, member, group = pair
    mine = make_device(owner)
    client = api.as_user(owner)
    assert post_message(client, group, client_msg_id="k", body="x", device=str(mine.pk)).status_code == 201
    assert Message.objects.get().sender_device == mine
    not_mine = make_device(member)
    assert post_message(client, group, client_msg_id="k2", body="x", device=str(not_mine.pk)).status_code == 404


@pytest.mark.parametrize("payload, field", [
    ({"client_msg_id": "k", "body": ""}, "body"),
    ({"client_msg_id": "k", "body": "   \n"}, "body"),
    ({"client_msg_id": "k", "body": "x" * 4001}, "body"),
    ({"client_msg_id": "k", "body": 123}, "body"),
    ({"client_msg_id": "k", "body": None}, "body"),
    ({"client_msg_id": "k", "body": ["hi"]}, "body"),
    ({"client_msg_id": "k"}, "body"),
    ({"client_msg_id": "k", "body": "nul \x00 inside"}, "body"),
    ({"body": "hi"}, "client_msg_id"),
    ({"client_msg_id": "", "body": "hi"}, "client_msg_id"),
    ({"client_msg_id": "k" * 65, "body": "hi"}, "client_msg_id"),
    ({"client_msg_id": 7, "body": "hi"}, "client_msg_id"),
    ({"client_msg_id": "k", "body": "hi", "device": 12345}, "device"),
    ({"client_msg_id": "k", "body": "hi", "device": "not-a-uuid"}, "device"),
])
def test_bad_sends_are_400_with_field_errors(api, pair, payload, field):
    owner, _member, group = pair
    response = post_message(api.as_user(owner), group, **payload)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["fields"]
    assert not Message.objects.exists()


def test_a_body_that_is_not_valid_unicode_is_400(api, pair):
    owner, _member, group = pair
    response = api.as_user(owner).post(f"/api/v1/conversations/{group.pk}/messages",
                                       '{"client_msg_id": "k", "body": "lone \\ud800 surrogate"}',
                                       content_type="application/json")
    assert response.status_code == 400 and "body" in response.json()["fields"]


def test_the_longest_body_and_key_are_accepted(api, pair):
    owner, _member, group = pair
    response = post_message(api.as_user(owner), group, client_msg_id="k" * 64, body="x" * 4000)
    assert response.status_code == 201


@override_settings(PARLEY_MAX_BODY_LENGTH=10)
def test_the_body_limit_is_a_setting(api, pair):
    owner, _member, group = pair
    response = post_message(api.as_user(owner), group, client_msg_id="k", body="x" * 11)
    assert response.status_code == 400 and "body" in response.json()["fields"]


def test_malformed_json_send_is_400(api, pair):
    owner, _member, group = pair
    response = api.as_user(owner).post(f"/api/v1/conversations/{group.pk}/messages", '{"body": ',
                                       content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_messages_are_read_after_a_seq_in_ascending_order(api, pair, send):
    owner, member, group = pair
    for n in range(5):
        send(owner, group, body=f"m{n}")
    client = api.as_user(member)
    assert page(client, group) == ([1, 2, 3, 4, 5], False)
    assert page(client, group, "?after_seq=3") == ([4, 5], False)
    assert page(client, group, "?after_seq=2&limit=2") == ([3, 4], True)
    assert page(client, group, "?after_seq=99") == ([], False)
    assert page(client, group, f"?before_seq={2**62}&limit=2") == ([4, 5], True)


def test_paging_is_capped_at_200_and_exact_at_its_boundaries(api, pair, send):
    owner, member, group = pair
    for n in range(250):
        send(owner, group, body=f"m{n}")
    client = api.as_user(member)
    seqs, has_more = page(client, group, "?after_seq=0&limit=500")
    assert (seqs, has_more) == (list(range(1, 201)), True)
    assert page(client, group, "?after_seq=200&limit=500") == (list(range(201, 251)), False)
    assert page(client, group, "?after_seq=200&limit=50") == (list(range(201, 251)), False)
    assert page(client, group, "?after_seq=199&limit=50") == (list(range(200, 250)), True)
    assert page(client, group, "?before_seq=51&limit=50") == (list(range(1, 51)), False)
    assert page(client, group, "?before_seq=52&limit=50") == (list(range(2, 52)), True)
    assert page(client, group, "?before_seq=251&limit=500") == (list(range(51, 251)), True)
    assert page(client, group, "?before_seq=1") == ([], False)
    assert len(page(client, group)[0]) == 50  # the default limit


@pytest.mark.parametrize("query, field", [
    ("?after_seq=-1", "after_seq"),
    ("?before_seq=-5", "before_seq"),
    (f"?after_seq={2**62 + 1}", "after_seq"),
    ("?after_seq=" + "9" * 40, "after_seq"),
    ("?after_seq=abc", "after_seq"),
    ("?limit=0", "limit"),
    ("?limit=-3", "limit"),
    ("?limit=ten", "limit"),
    ("?limit=2.5", "limit"),
    ("?after_seq=1&before_seq=5", "before_seq"),
])
def test_bad_paging_parameters_are_400(api, pair, query, field):
    owner, _member, group = pair
    response = api.as_user(owner).get(f"/api/v1/conversations/{group.pk}/messages{query}")
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_a_removed_message_keeps_its_slot_without_its_body(api, pair, send):
    owner, member, group = pair
    send(owner, group, body="keep")
    removed = send(owner, group, body="secret")
    Message.objects.filter(pk=removed["id"]).update(state=Message.State.REMOVED)
    messages = api.as_user(member).get(f"/api/v1/conversations/{group.pk}/messages").json()["messages"]
    assert [(m["seq"], m["state"], m["body"]) for m in messages] == [(1, "visible", "keep"), (2, "removed", "")]


def test_a_public_channel_can_be_read_before_joining_but_not_posted_to(api, make_user, make_group, send):
    owner = make_user()
    channel = make_group(owner, title="lobby", kind="channel", public=True)
    send(owner, channel)
    client = api.as_user(make_user())
    assert page(client, channel) == ([1], False)
    assert post_message(client, channel, client_msg_id="k", body="hi").status_code == 404
    client.post(f"/api/v1/conversations/{channel.pk}/join")
    assert post_message(client, channel, client_msg_id="k", body="hi").status_code == 201


def test_sending_does_not_depend_on_the_cache(api, pair):
    owner, _member, group = pair
    dead_cache = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                              "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=dead_cache):
        response = post_message(api.as_user(owner), group, client_msg_id="k", body="still stored")
    assert response.status_code == 201
