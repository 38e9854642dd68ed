"""A private conversation does not exist for those outside it (CONTRACT, Semantics 7)."""
import pytest

SEEN_AS_MISSING = [
    ("get", "/api/v1/conversations/{c}", None),
    ("get", "/api/v1/conversations/{c}/members", None),
    ("post", "/api/v1/conversations/{c}/members", {"user_ids": [1]}),
    ("delete", "/api/v1/conversations/{c}/members/{u}", None),
    ("post", "/api/v1/conversations/{c}/join", None),
    ("get", "/api/v1/conversations/{c}/messages", None),
    ("post", "/api/v1/conversations/{c}/messages", {"client_msg_id": "k", "body": "let me in"}),
    ("post", "/api/v1/conversations/{c}/read", {"seq": 1}),
    ("post", "/api/v1/conversations/{c}/delivered", {"seq": 1, "device": "{d}"}),
    ("get", "/api/v1/conversations/{c}/receipts", None),
    ("get", "/api/v1/messages/{m}/info", None),
    ("post", "/api/v1/messages/{m}/flag", {"reason": "spam"}),
]


@pytest.mark.parametrize("kind", ["group", "private channel"])
@pytest.mark.parametrize("method, path, payload", SEEN_AS_MISSING)
def test_an_outsider_gets_404_for_everything_about_a_private_conversation(
        api, make_user, make_group, make_device, send, kind, method, path, payload):
    owner, member, outsider = make_user(), make_user(), make_user()
    conversation = make_group(owner, [member], kind="group" if kind == "group" else "channel")
    message = send(owner, conversation)
    ids = {"c": conversation.pk, "u": member.pk, "m": message["id"], "d": make_device(outsider).pk}
    if payload and payload.get("device"):
        payload = {**payload, "device": str(ids["d"])}
    response = getattr(api.as_user(outsider), method)(path.format(**ids), payload, format="json")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": response.json()["detail"]}
    assert str(conversation.pk) not in response.json()["detail"]


def test_a_missing_and_a_private_conversation_answer_alike(api, make_user, make_group):
    private = make_group(make_user(), [], title="secret")
    client = api.as_user(make_user())
    hidden = client.get(f"/api/v1/conversations/{private.pk}/messages")
    missing = client.get(f"/api/v1/conversations/{private.pk + 1000}/messages")
    assert (hidden.status_code, hidden.json()) == (missing.status_code, missing.json())
