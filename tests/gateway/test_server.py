"""The gateway as a real server process (gateway.server, ``python -m gateway``): what reaches the
network when a client misbehaves, beyond what an in-process test can see."""
from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async
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

    group = await database_sync_to_async(fill)()
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


# --- the 4429 rule on the network (messaging.ratelimit.RetryRule) -----------------------------------

BURST_LIMITS = {"PARLEY_RATE_SEND": "5/s", "PARLEY_RATE_WS_FRAMES": "8/s", "PARLEY_RATE_WS_HARD_CAP": "80/s",
                "PARLEY_RATE_WS_ABUSE": "1/m"}  # one early frame would close the socket


def alices_group() -> int:
    from messaging.models import Membership
    return Membership.objects.filter(user__username="alice").values_list("conversation_id", flat=True).get()


async def test_a_client_keeping_eight_sends_in_flight_that_waits_each_retry_after_is_never_closed(alice, gateways):
    (gateway,) = await asyncio.to_thread(gateways, 1, **BURST_LIMITS)
    group = await database_sync_to_async(alices_group)()
    ws = await connect(gateway, alice)
    messages, keys, refusals = 40, iter(range(40)), 0
    answers: dict[str, asyncio.Queue] = {}

    async def read() -> None:
        async for text in ws:
            frame = json.loads(text)
            if frame["type"] in ("send.ok", "send.error"):
                await answers[frame["client_msg_id"]].put(frame)

    async def sender() -> None:
        nonlocal refusals
        for key in keys:
            answers[f"k{key}"] = queue = asyncio.Queue()
            while True:
                await ws.send(json.dumps({"type": "send", "conversation": group, "client_msg_id": f"k{key}",
                                          "body": f"message {key}"}))
                answer = await asyncio.wait_for(queue.get(), 30)
                if answer["type"] == "send.ok":
                    break
                assert answer["code"] == "rate_limited", answer
                refusals += 1
                await asyncio.sleep(answer["retry_after_ms"] / 1000)

    reader = asyncio.create_task(read())
    await asyncio.gather(*(sender() for _ in range(8)))
    assert refusals >= messages / 4  # the burst really was over the rates
    assert not reader.done()  # the socket is still open
    await ws.close()
    await reader
    log = await asyncio.to_thread(gateway.stop)
    assert "Traceback" not in log, log[-3000:]


async def test_a_client_that_resends_without_waiting_its_retry_after_is_closed_with_4429(alice, gateways):
    (gateway,) = await asyncio.to_thread(gateways, 1, **BURST_LIMITS)
    group = await database_sync_to_async(alices_group)()
    ws = await connect(gateway, alice)
    burst = [{"type": "send", "conversation": group, "client_msg_id": f"burst{i}", "body": "hi"} for i in range(8)]
    again = {"type": "send", "conversation": group, "client_msg_id": "again", "body": "hi"}
    try:  # past the rates at once, then one frame again and again, never waiting its retry_after
        for frame in burst + [again] * 20:
            await ws.send(json.dumps(frame))
    except websockets.ConnectionClosed:
        pass
    assert await close_code(ws) == 4429
    log = await asyncio.to_thread(gateway.stop)
    assert "Traceback" not in log, log[-3000:]
