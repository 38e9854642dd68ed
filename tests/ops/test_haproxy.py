"""The stack's load balancer: HAProxy with stack.haproxy.cfg in front of real gateways (daphne on
PostgreSQL and a private Redis). WebSockets through it, least connections, routing on /readyz,
a killed gateway, and a drained restart that moves every client with nothing lost."""
from __future__ import annotations

import asyncio
import json
import urllib.request
from email.message import Message

import pytest
import websockets
from rest_framework.authtoken.models import Token

from ops.client import ParleyClient
from tests.live import gateways, haproxy, redis_server, wait_for  # noqa: F401 - fixtures

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    devices = [str(make_device(user, f"d{i}").pk) for user in (alice, bob) for i in range(3)]
    tokens = {user.username: Token.objects.create(user=user).key for user in (alice, bob)}
    return group, devices, tokens


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """Status, headers (names in any case: HAProxy writes them in lower case) and body."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers, response.read()


def ticket(base: str, token: str) -> str:
    request = urllib.request.Request(f"{base}/api/v1/ws-ticket", method="POST", data=b"{}",
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["ticket"]


async def open_socket(base: str, token: str, device: str) -> tuple[websockets.ClientConnection, str]:
    """A greeted socket through ``base``, and the gateway HAProxy sent it to."""
    key = await asyncio.to_thread(ticket, base, token)
    ws = await websockets.connect(f"{base.replace('http', 'ws')}/ws/v1/?device={device}&ticket={key}")
    await ws.send(json.dumps({"type": "hello"}))
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "ready":
        pass
    return ws, ws.response.headers["X-Parley-Gateway"]


async def test_http_and_websockets_pass_through_and_a_message_crosses_gateways(people, gateways, haproxy):
    group, devices, tokens = people
    lb = haproxy(await asyncio.to_thread(gateways, 2))
    status, headers, body = await asyncio.to_thread(get, f"{lb.url}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert headers["X-Request-ID"]  # set by HAProxy, kept by Parley
    assert (await asyncio.to_thread(get, f"{lb.url}/healthz", {"X-Request-ID": "mine-1"}))[1]["X-Request-ID"] == "mine-1"

    alice, alice_on = await open_socket(lb.url, tokens["alice"], devices[0])
    bob, bob_on = await open_socket(lb.url, tokens["bob"], devices[3])
    assert {alice_on, bob_on} == {"gateway1", "gateway2"}  # least connections: the idle one next
    await alice.send(json.dumps({"type": "send", "conversation": group.pk, "client_msg_id": "k1", "body": "via haproxy"}))
    while True:
        frame = json.loads(await asyncio.wait_for(bob.recv(), 10))
        if frame["type"] == "message":
            break
    assert frame["message"]["body"] == "via haproxy"
    for ws in (alice, bob):
        await ws.close()


async def test_the_gateway_with_the_fewest_connections_gets_the_next_one(people, gateways, haproxy):
    group, devices, tokens = people
    lb = haproxy(await asyncio.to_thread(gateways, 2))
    await asyncio.to_thread(lb.runtime, "set server gateways/gateway2 state maint")
    held = [await open_socket(lb.url, tokens["alice"], device) for device in devices[:2]]
    assert [on for _, on in held] == ["gateway1", "gateway1"]
    await asyncio.to_thread(lb.runtime, "set server gateways/gateway2 state ready")
    await asyncio.to_thread(wait_for, lambda: lb.states()["gateway2"] == "UP", 10, "gateway2 up")
    # Round robin would alternate; least connections sends both to the empty gateway.
    more = [await open_socket(lb.url, tokens["bob"], device) for device in devices[3:5]]
    assert [on for _, on in more] == ["gateway2", "gateway2"]
    assert await asyncio.to_thread(lb.sessions) == {"gateway1": 2, "gateway2": 2}
    for ws, _ in held + more:
        await ws.close()


async def test_a_gateway_that_is_not_ready_gets_no_clients(people, gateways, haproxy):
    """/readyz, not /healthz: a gateway whose channel layer is unreachable answers /healthz but
    not /readyz, and HAProxy keeps it out."""
    (ready,) = await asyncio.to_thread(gateways, 1)
    (unready,) = await asyncio.to_thread(gateways, 1, CHANNEL_REDIS_URLS="redis://127.0.0.1:1/0",
                                         PARLEY_READYZ_TIMEOUT_SECONDS="0.5")
    assert (await asyncio.to_thread(get, f"{unready.url}/healthz"))[0] == 200
    lb = haproxy([ready, unready], until=lambda states: states == {"gateway1": "UP", "gateway2": "DOWN"})
    answers = [await asyncio.to_thread(get, f"{lb.url}/healthz") for _ in range(6)]
    assert {headers["X-Parley-Gateway"] for _, headers, _ in answers} == {"gateway1"}
    assert "L7STS" in lb.stats()["gateway2"]["check_status"]  # it answered, with a 503


async def test_when_no_gateway_is_ready_clients_are_still_served_fail_open(people, gateways, haproxy):
    """Every gateway failing its check is more likely the check (all busy, the layer's Redis
    restarting) than every gateway gone: HAProxy's backup servers route to them all anyway."""
    unready = await asyncio.to_thread(gateways, 2, CHANNEL_REDIS_URLS="redis://127.0.0.1:1/0",
                                      PARLEY_READYZ_TIMEOUT_SECONDS="0.5")
    lb = haproxy(unready, until=lambda states: set(states.values()) == {"DOWN"})
    answers = [await asyncio.to_thread(get, f"{lb.url}/healthz") for _ in range(4)]
    assert [status for status, _, _ in answers] == [200] * 4
    assert {headers["X-Parley-Gateway"] for _, headers, _ in answers} == {"gateway1-open", "gateway2-open"}


async def test_a_killed_gateway_costs_no_failed_request_and_is_taken_out(people, gateways, haproxy):
    group, devices, tokens = people
    g1, g2 = await asyncio.to_thread(gateways, 2)
    lb = haproxy([g1, g2])
    await asyncio.to_thread(g1.kill)
    answers = [await asyncio.to_thread(get, f"{lb.url}/healthz") for _ in range(10)]
    assert [(status, headers["X-Parley-Gateway"]) for status, headers, _ in answers] == [(200, "gateway2")] * 10
    await asyncio.to_thread(wait_for, lambda: lb.states()["gateway1"] == "DOWN", 15, "gateway1 marked down")


async def test_a_drained_restart_moves_every_client_to_the_other_gateway_with_nothing_lost(people, gateways, haproxy):
    """The restart procedure of docs/operations.md: drain the gateway in HAProxy, SIGTERM it (its
    sockets get 1012 and a reconnect hint, and come back through HAProxy to the other gateway),
    start it again, make it ready."""
    group, devices, tokens = people
    g1, g2 = await asyncio.to_thread(gateways, 2)
    lb = haproxy([g1, g2])
    owners = ["alice"] * 3 + ["bob"] * 3
    clients = [ParleyClient([lb.url], token=tokens[owner], device_id=device) for owner, device in zip(owners, devices)]
    runners = [asyncio.create_task(client.run()) for client in clients]
    for client in clients:
        await asyncio.wait_for(client.ready.wait(), 30)
    assert await asyncio.to_thread(lb.sessions) == {"gateway1": 3, "gateway2": 3}
    sent = [(await clients[0].send(group.pk, f"before {i}"))["message"] for i in range(3)]

    await asyncio.to_thread(lb.runtime, "set server gateways/gateway1 state drain")  # no new clients
    assert (await asyncio.to_thread(lb.states))["gateway1"] == "DRAIN"
    served_before = int((await asyncio.to_thread(lb.stats))["gateway1"]["stot"])
    await asyncio.to_thread(g1.stop)  # SIGTERM: 1012 with a reconnect hint to each of its sockets
    await asyncio.to_thread(wait_for, lambda: lb.sessions() == {"gateway1": 0, "gateway2": 6}, 60,
                            "every client back, on gateway2")
    # Not one reconnect went to the draining gateway (with the fewest connections, least
    # connections alone would have picked it first, and it would have sent them away again).
    assert int((await asyncio.to_thread(lb.stats))["gateway1"]["stot"]) == served_before
    sent += [(await clients[3].send(group.pk, f"during {i}"))["message"] for i in range(3)]

    await asyncio.to_thread(g1.start)
    await asyncio.to_thread(lb.runtime, "set server gateways/gateway1 state ready")
    await asyncio.to_thread(wait_for, lambda: lb.states()["gateway1"] == "UP", 15, "gateway1 up again")
    # Least connections: what comes next goes to the restarted, empty gateway.
    assert (await asyncio.to_thread(get, f"{lb.url}/healthz"))[1]["X-Parley-Gateway"] == "gateway1"

    last_seq = max(message["seq"] for message in sent)
    for client in clients:
        await asyncio.wait_for(_have(client, group.pk, last_seq), 30)
        assert client.violations == []
        assert client.shown[group.pk] == list(range(1, last_seq + 1))
    for client in clients:
        await client.stop()
    for runner in runners:
        runner.cancel()


async def _have(client: ParleyClient, conversation: int, last_seq: int) -> None:
    while client.cursors.get(conversation, 0) < last_seq:
        await asyncio.sleep(0.05)
