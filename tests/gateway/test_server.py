"""The gateway as a real server process (gateway.server, ``python -m gateway``): what reaches the
network when a client misbehaves, beyond what an in-process test can see."""
from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
import websockets
from rest_framework.authtoken.models import Token

from tests.live import gateways, redis_server  # noqa: F401 - fixtures

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def alice(make_user, make_device, make_group):
    user, other = make_user("alice"), make_user("bob")
    make_group(user, [other])
    return Token.objects.create(user=user).key, str(make_device(user).pk)


def ticket(base: str, token: str) -> str:
    request = urllib.request.Request(f"{base}/api/v1/ws-ticket", method="POST", data=b"{}",
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["ticket"]


async def connect(gateway, alice) -> websockets.ClientConnection:
    token, device = alice
    key = await asyncio.to_thread(ticket, gateway.url, token)
    ws = await websockets.connect(f"{gateway.url.replace('http', 'ws')}/ws/v1/?device={device}&ticket={key}",
                                  max_size=None)
    await ws.send(json.dumps({"type": "hello"}))
    while json.loads(await ws.recv())["type"] != "ready":
        pass
    return ws


async def close_code(ws) -> int:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else 1006


async def test_a_client_that_keeps_sending_garbage_is_closed_with_4400_and_the_gateway_stays_healthy(
        alice, gateways):
    (gateway,) = await asyncio.to_thread(gateways, 1, PARLEY_WS_MAX_BAD_FRAMES="3")
    ws = await connect(gateway, alice)
    for _ in range(40):  # it goes on after the server has decided to close
        try:
            await ws.send("not json")
        except websockets.ConnectionClosed:
            break
    assert await close_code(ws) == 4400
    log = await asyncio.to_thread(gateway.stop)
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("size", [5_000, 2 * 1024 * 1024])
async def test_a_frame_over_the_limit_closes_with_1009(alice, gateways, size):
    (gateway,) = await asyncio.to_thread(gateways, 1, PARLEY_WS_MAX_FRAME_BYTES="4096")
    ws = await connect(gateway, alice)
    await ws.send(json.dumps({"type": "ping", "pad": "x" * size}))
    assert await close_code(ws) == 1009
    log = await asyncio.to_thread(gateway.stop)
    assert "Traceback" not in log, log[-3000:]


async def test_a_frame_within_the_limit_is_answered(alice, gateways):
    (gateway,) = await asyncio.to_thread(gateways, 1, PARLEY_WS_MAX_FRAME_BYTES="4096")
    ws = await connect(gateway, alice)
    await ws.send(json.dumps({"type": "ping", "pad": "x" * 3000}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
    await ws.close()


async def test_what_the_server_sends_is_not_held_to_the_clients_frame_limit(alice, gateways, make_user):
    """A replay page of long messages is far over the limit on what a client may send."""
    from messaging.models import Conversation, Membership, User
    from messaging.send import do_send_message

    (gateway,) = await asyncio.to_thread(gateways, 1, PARLEY_WS_MAX_FRAME_BYTES="4096")
    token, device = alice

    def fill() -> int:
        owner = User.objects.get(username="alice")
        group = Membership.objects.filter(user=owner).values_list("conversation_id", flat=True).first()
        for i in range(20):
            do_send_message(sender=owner, conversation_id=group, client_msg_id=f"long{i}", body="é" * 1000)
        return Conversation.objects.get(pk=group).pk

    group = await asyncio.to_thread(fill)
    key = await asyncio.to_thread(ticket, gateway.url, token)
    ws = await websockets.connect(f"{gateway.url.replace('http', 'ws')}/ws/v1/?device={device}&ticket={key}",
                                  max_size=None)
    await ws.send(json.dumps({"type": "hello", "cursors": {str(group): 0}}))
    page = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert (page["type"], len(page["messages"])) == ("messages", 20)
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
    await ws.close()
    log = await asyncio.to_thread(gateway.stop)
    assert "Traceback" not in log, log[-3000:]
