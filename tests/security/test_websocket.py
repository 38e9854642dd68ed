"""The WebSocket edge: cross-site hijacking, and authorization of every frame (CONTRACT, WebSocket)."""
from __future__ import annotations

import dataclasses
import typing

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from gateway import protocol
from messaging.conversations import do_remove_member
from messaging.send import do_send_message

pytestmark = pytest.mark.django_db(transaction=True)

# One example of each client frame that names a conversation.
CONVERSATION_FRAMES = {
    protocol.Send: lambda c: {"type": "send", "conversation": c, "client_msg_id": "k", "body": "let me in"},
    protocol.Ack: lambda c: {"type": "ack", "conversation": c, "seq": 1},
    protocol.Read: lambda c: {"type": "read", "conversation": c, "seq": 1},
    protocol.Replay: lambda c: {"type": "replay", "conversation": c, "after_seq": 0},
    protocol.ReplayChanges: lambda c: {"type": "replay_changes", "conversation": c, "after": 0},
    protocol.Typing: lambda c: {"type": "typing", "conversation": c},
}


@pytest.fixture
def room(make_user, make_device, make_group):
    alice, bob, eve = make_user("alice"), make_user("bob"), make_user("eve")
    group = make_group(alice, [bob])
    do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="m1", body="private")
    return {"alice": alice, "bob": bob, "eve": eve, "group": group, "bob_phone": make_device(bob),
            "eve_phone": make_device(eve), "alice_phone": make_device(alice)}


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def handshake(user, device, origin: str | None, host: str = "localhost:8000"):
    """A browser-style handshake to ``ws://<host>``: the session cookie rides along, whichever
    page opened it."""
    from chatproject.asgi import application

    headers = [(b"cookie", await database_sync_to_async(session_cookie)(user)), (b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, f"/ws/v1/?device={device.pk}", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def first_output(communicator) -> dict:
    return await communicator.receive_output(timeout=3)


@pytest.mark.parametrize("origin", [
    "https://evil.example", "http://localhost.evil.example", "null", "http://127.0.0.1.evil.example:8000",
    "file://", "https://evil.example/http://localhost",
    # Same host, another scheme or port: another origin (another server on that machine).
    "http://localhost:9999", "https://localhost:8000", "http://localhost", "ws://localhost:8000",
])
async def test_a_page_on_another_site_cannot_open_a_socket_with_the_users_cookie(room, origin):
    communicator = await handshake(room["bob"], room["bob_phone"], origin)
    closed = await first_output(communicator)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4403)


@pytest.mark.parametrize("origin, host", [
    ("http://localhost:8000", "localhost:8000"), ("http://127.0.0.1", "127.0.0.1"), (None, "localhost:8000"),
])
async def test_the_sites_own_pages_and_non_browser_clients_connect_with_the_cookie(room, origin, host):
    communicator = await handshake(room["bob"], room["bob_phone"], origin, host=host)
    await communicator.send_json_to({"type": "hello"})
    assert (await communicator.receive_json_from(timeout=5))["type"] in ("messages", "ready")
    await communicator.disconnect()


async def test_a_trusted_origin_connects_with_its_exact_scheme_and_port_only(room, settings):
    """Behind a TLS proxy the page is https://chat.example while the socket reaches the server
    as ws://: the operator names the page's origin in DJANGO_CSRF_TRUSTED_ORIGINS."""
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example"]
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "chat.example"]
    ok = await handshake(room["bob"], room["bob_phone"], "https://chat.example", host="chat.example")
    await ok.send_json_to({"type": "hello"})
    assert (await ok.receive_json_from(timeout=5))["type"] in ("messages", "ready")
    await ok.disconnect()
    for origin in ("https://chat.example:8443", "http://chat.example:8080"):
        refused = await handshake(room["bob"], room["bob_phone"], origin, host="chat.example")
        closed = await first_output(refused)
        assert (closed["type"], closed["code"]) == ("websocket.close", 4403)


def test_every_frame_that_names_a_conversation_is_checked_below():
    named = {cls for cls in typing.get_args(protocol.Frame)
             if "conversation" in {f.name for f in dataclasses.fields(cls)}}
    assert named == set(CONVERSATION_FRAMES)


async def refusals(socket, conversation_id: int) -> list[tuple[str, str]]:
    """Send every conversation frame about ``conversation_id``; return each answer's (type, code)."""
    answers = []
    for example in CONVERSATION_FRAMES.values():
        await socket.send(example(conversation_id))
        reply = await socket.recv_type("error", "send.error", "messages", "message", "send.ok")
        answers.append((reply["type"], reply.get("code")))
    return answers


EXPECTED = [("send.error", "not_found")] + [("error", "not_found")] * (len(CONVERSATION_FRAMES) - 1)


async def test_every_frame_about_a_conversation_you_are_not_in_is_not_found(room, open_socket):
    eve = await open_socket(room["eve"], room["eve_phone"])
    assert await refusals(eve, room["group"].pk) == EXPECTED
    assert await refusals(eve, 10**12) == EXPECTED  # the same as for one that does not exist
    await eve.send({"type": "ping"})
    assert (await eve.recv_type("pong"))["type"] == "pong"
    await eve.close()


async def test_after_removal_every_frame_about_the_conversation_is_not_found_and_nothing_arrives(
        room, open_socket):
    bob = await open_socket(room["bob"], room["bob_phone"])
    group = room["group"]
    await database_sync_to_async(do_remove_member)(actor=room["alice"], conversation_id=group.pk,
                                                   user_id=room["bob"].pk)
    assert (await bob.recv_type("conversation.left"))["conversation"]["id"] == group.pk
    assert await refusals(bob, group.pk) == EXPECTED
    await database_sync_to_async(do_send_message)(sender=room["alice"], conversation_id=group.pk,
                                                  client_msg_id="m2", body="after you left")
    assert await bob.nothing(timeout=0.5)
    await bob.close()
    assert await database_sync_to_async(group.messages.filter(body="let me in").exists)() is False
