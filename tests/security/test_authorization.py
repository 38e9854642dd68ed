"""Authorization on every REST endpoint, found by walking the URL conf (CONTRACT, Semantics 7).

A new /api/v1/ route fails ``test_every_api_route_is_classified`` until it is given a scope
below, and from then on every check of that scope runs against every method it answers, with
and without the trailing slash.
"""
from __future__ import annotations

import pytest
from django.urls import reverse

from tests import files

from .conftest import P256DH, PUSH_AUTH, api_patterns, api_routes

# Open to anyone: the ways in, and the API's description.
PUBLIC = {"auth-signup", "auth-login", "auth-token", "schema", "docs"}

# What each other route is about, and so who is refused:
# - "user": the caller's own things; any signed-in user.
# - "device": a device of the caller's; another's is 404.
# - "conversation": a conversation (or one of its messages); outsiders and removed members get
#   404 for a private one, exactly as for one that does not exist.
# - "moderator": moderators only; everyone else 403.
# - "file": a file of a conversation's message; everyone but its members gets 404, logged out
#   included (a file URL says nothing of whether it exists).
SCOPES = {
    "auth-logout": "user", "auth-end-session": "user", "me": "user", "me-password": "user", "ws-ticket": "user", "users": "user", "devices": "user",
    "channels": "user", "conversations": "user", "search": "user",
    "device": "device", "device-push-subscription": "device", "upload": "device",
    "uploads": "conversation", "file": "file", "file-thumbnail": "file",
    "conversation": "conversation", "conversation-members": "conversation",
    "conversation-member": "conversation", "conversation-join": "conversation", "conversation-me": "conversation",
    "conversation-messages": "conversation", "conversation-read": "conversation",
    "conversation-delivered": "conversation", "conversation-receipts": "conversation",
    "message-info": "conversation", "message-flag": "conversation", "conversation-changes": "conversation",
    "message": "conversation", "message-reactions": "conversation", "message-reaction": "conversation",
    "moderation-flags": "moderator", "moderation-flag-resolve": "moderator",
    "moderation-user-suspension": "moderator", "moderation-conversation-slow-mode": "moderator",
    "moderation-flag-context": "moderator", "moderation-decisions": "moderator",
}

# A valid body for the requests that take one: authorization must be what refuses them, not
# validation (a new route whose check comes after validation shows up as a 400 below).
PAYLOADS = {
    ("conversation-members", "post"): lambda w: {"user_ids": [w.outsider.pk]},
    ("conversation", "patch"): lambda w: {"title": "taken over", "topic": "ours now"},
    ("conversation-me", "patch"): lambda w: {"notify": "none", "muted_until": None},
    ("conversation-member", "patch"): lambda w: {"role": "admin"},
    ("conversation-messages", "post"): lambda w: {"client_msg_id": "let-me-in", "body": "hello"},
    ("uploads", "post"): lambda w: {"file": files.upload(files.png(), "in.png"), "conversation": w.group.pk},
    ("conversation-read", "post"): lambda w: {"seq": 1},
    ("conversation-delivered", "post"): lambda w: {"seq": 1, "device": str(w.outsider_device.pk)},
    ("message-flag", "post"): lambda w: {"reason": "spam"},
    ("message", "patch"): lambda w: {"body": "edited by someone else"},
    ("message-reactions", "post"): lambda w: {"emoji": "👍"},
    ("device-push-subscription", "post"): lambda w: {
        "endpoint": "https://push.example.com/x", "keys": {"p256dh": P256DH, "auth": PUSH_AUTH}},
    ("moderation-flag-resolve", "post"): lambda w: {"action": "remove_message"},
    ("moderation-user-suspension", "put"): lambda w: {"suspended": True},
    ("moderation-conversation-slow-mode", "put"): lambda w: {"seconds": 60},
}
ROUTES = api_routes()


def requests_of(scope: str, world):
    """(description, method, url, payload) for every method of every route of a scope, both spellings."""
    for route in ROUTES:
        if SCOPES.get(route.name) != scope:
            continue
        arguments = {k: v for k, v in world.kwargs().items() if f"<{k}>" in route.pattern or f":{k}>" in route.pattern}
        url = reverse(f"api:{route.name}", kwargs=arguments)
        for method in route.methods:
            payload_of = PAYLOADS.get((route.name, method))
            for spelling in (url, url + "/"):
                payload = payload_of(world) if payload_of else None  # a file is read once: one each
                yield f"{method.upper()} {spelling}", method, spelling, payload


def call(client, method, url, payload):
    multipart = any(hasattr(value, "read") for value in (payload or {}).values())
    return getattr(client, method)(url, payload, format="multipart" if multipart else "json")


def test_every_api_route_is_classified():
    names = {route.name for route in ROUTES}
    assert not names - PUBLIC - set(SCOPES), "classify the new routes in tests/security/test_authorization.py"
    assert not (PUBLIC | set(SCOPES)) - names, "a classified route is gone: drop it from the table"
    paths = {path for path, _ in api_patterns()}
    assert {route.pattern + "/" for route in ROUTES} == paths - {route.pattern for route in ROUTES}


def test_anonymous_requests_are_refused_everywhere_but_the_public_endpoints(api, world):
    refused = {401, 403}
    wrong = [(what, response.status_code)
             for scope in ("user", "device", "conversation", "moderator")
             for what, method, url, payload in requests_of(scope, world)
             if (response := call(api, method, url, payload)).status_code not in refused]
    assert not wrong


@pytest.mark.parametrize("who", ["anonymous", "outsider", "removed"])
def test_files_are_404_to_everyone_but_the_members(api, world, who):
    client = api if who == "anonymous" else api.as_user(getattr(world, who))
    wrong = [(what, response.status_code) for what, method, url, payload in requests_of("file", world)
             if (response := call(client, method, url, payload)).status_code != 404]
    assert not wrong
    member = api.as_user(world.member)
    assert all(call(member, method, url, payload).status_code == 200
               for _what, method, url, payload in requests_of("file", world))


@pytest.mark.parametrize("who", ["outsider", "removed"])
def test_outsiders_and_removed_members_get_404_for_everything_about_a_private_conversation(api, world, who):
    client = api.as_user(getattr(world, who))
    wrong = [(what, response.status_code, response.json())
             for what, method, url, payload in requests_of("conversation", world)
             if (response := call(client, method, url, payload)).status_code != 404]
    assert not wrong
    assert world.group.messages.count() == 1 and world.group.memberships.count() == 2


def test_another_users_device_is_404(api, world):
    client = api.as_user(world.outsider)
    wrong = [(what, response.status_code) for what, method, url, payload in requests_of("device", world)
             if (response := call(client, method, url, payload)).status_code != 404]
    assert not wrong
    assert type(world.owner_device).objects.filter(pk=world.owner_device.pk).exists()


@pytest.mark.parametrize("who", ["member", "owner", "outsider"])
def test_only_moderators_pass_the_moderation_endpoints(api, world, who):
    client = api.as_user(getattr(world, who))
    wrong = [(what, response.status_code) for what, method, url, payload in requests_of("moderator", world)
             if (response := call(client, method, url, payload)).status_code != 403]
    assert not wrong
    assert world.message.__class__.objects.get(pk=world.message.pk).state == "visible"


def test_the_walk_finds_the_api_and_every_scope_has_requests(world):
    """Guards the walk itself: were the URL conf walked wrong, every check above would pass on nothing."""
    assert "api/v1/conversations/<id:conversation_id>/messages" in {route.pattern for route in ROUTES}
    for scope in set(SCOPES.values()):
        assert any(requests_of(scope, world)), scope
