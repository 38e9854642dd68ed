"""Delivery under churn, across real processes: daphne gateways on PostgreSQL and a private Redis,
driven by the reference client (ops.client)."""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from ops.client import ParleyClient
from tests.live import CeleryWorker, Gateway, gateways, redis_server  # noqa: F401 - gateways, redis_server: fixtures

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    devices = {u.username: [str(make_device(u, f"d{i}").pk) for i in range(2)] for u in (alice, bob)}
    tokens = {u.username: Token.objects.create(user=u).key for u in (alice, bob)}
    return group, devices, tokens


def rest_send(base: str, token: str, conversation: int, key: str) -> dict:
    request = urllib.request.Request(
        f"{base}/api/v1/conversations/{conversation}/messages", method="POST",
        data=json.dumps({"client_msg_id": key, "body": f"rest {key}"}).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def wait_all_have(clients, conversation: int, last_seq: int, timeout: float = 60) -> None:
    async def have_all():
        while any(c.cursors.get(conversation, 0) < last_seq for c in clients):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(have_all(), timeout)


def assert_exactly_once_in_order(clients, conversation: int, last_seq: int) -> None:
    for client in clients:
        assert client.violations == []
        assert client.shown[conversation] == list(range(1, last_seq + 1))


async def test_concurrent_senders_on_two_gateways_every_connection_sees_a_gap_free_ordered_stream(
    people, gateways
):
    group, devices, tokens = people
    g1, g2 = await asyncio.to_thread(gateways, 2)
    clients = []
    for name, base in (("alice", g1.url), ("bob", g2.url)):
        for device in devices[name]:
            clients.append(ParleyClient([base], token=tokens[name], device_id=device))
    runners = [asyncio.create_task(c.run()) for c in clients]
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 30)

    per_client = 100
    await asyncio.gather(*(
        c.send(group.pk, f"{i}", client_msg_id=f"{n}-{i}")
        for n, c in enumerate(clients) for i in range(per_client)
    ))
    total = per_client * len(clients)
    await wait_all_have(clients, group.pk, total)
    assert_exactly_once_in_order(clients, group.pk, total)
    for c in clients:
        await c.stop()
    for r in runners:
        r.cancel()
    assert all(c.connections == 1 for c in clients)
    errors = g1.stop() + g2.stop()
    assert "Traceback" not in errors


async def test_clients_of_a_killed_gateway_resume_on_the_other_with_nothing_lost_or_shown_twice(
    people, gateways
):
    group, devices, tokens = people
    g1, g2 = await asyncio.to_thread(gateways, 2)
    bob = [ParleyClient([g1.url, g2.url], token=tokens["bob"], device_id=d, backoff_base=0.05) for d in devices["bob"]]
    runners = [asyncio.create_task(c.run()) for c in bob]
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in bob)), 30)

    async def alice_sends():
        for i in range(300):
            await asyncio.to_thread(rest_send, g2.url, tokens["alice"], group.pk, f"k{i}")

    sending = asyncio.create_task(alice_sends())
    await wait_all_have(bob, group.pk, 50)
    await asyncio.to_thread(g1.kill)
    await sending
    await wait_all_have(bob, group.pk, 300)
    assert_exactly_once_in_order(bob, group.pk, 300)
    assert all(c.connections >= 2 for c in bob)
    for c in bob:
        await c.stop()
    for r in runners:
        r.cancel()


async def test_after_a_redis_restart_every_device_has_every_message(people, gateways, redis_server):
    group, devices, tokens = people
    (g1,) = await asyncio.to_thread(gateways, 1)
    bob = [ParleyClient([g1.url], token=tokens["bob"], device_id=d, backoff_base=0.05) for d in devices["bob"]]
    runners = [asyncio.create_task(c.run()) for c in bob]
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in bob)), 30)

    async def alice_sends():
        for i in range(200):
            try:
                await asyncio.to_thread(rest_send, g1.url, tokens["alice"], group.pk, f"r{i}")
            except Exception:
                # The ws-ticket cache lives in the same Redis; a REST send never depends on it,
                # but retry once so the test measures delivery, not a refused request.
                await asyncio.sleep(0.2)
                await asyncio.to_thread(rest_send, g1.url, tokens["alice"], group.pk, f"r{i}")

    sending = asyncio.create_task(alice_sends())
    await wait_all_have(bob, group.pk, 40)
    await asyncio.to_thread(redis_server.restart, 1.0)
    await sending
    await wait_all_have(bob, group.pk, 200, timeout=90)
    assert_exactly_once_in_order(bob, group.pk, 200)
    for c in bob:
        await c.stop()
    for r in runners:
        r.cancel()


async def test_a_large_channel_reaches_every_member_in_contiguous_batches_built_by_a_real_worker(
    redis_server, make_user, make_device, make_group
):
    from messaging.models import Conversation

    # A slow tail check: while the worker boots, the gateway must not repair from the store
    # (it would, correctly, with message frames), so every frame here comes from a batch.
    large = {"PARLEY_LARGE_CHANNEL_THRESHOLD": "3", "PARLEY_BATCH_WINDOW_MS": "100",
             "PARLEY_GATEWAY_TAIL_CHECK_SECONDS": "60"}
    users = [await database_sync_to_async(make_user)() for _ in range(4)]
    channel = await database_sync_to_async(make_group)(users[0], users[1:], kind=Conversation.Kind.CHANNEL,
                                                       title="big")
    tokens = [(await database_sync_to_async(Token.objects.create)(user=u)).key for u in users]
    gateway, worker = Gateway(redis_server.url, large), CeleryWorker(redis_server.url, large)
    await asyncio.to_thread(gateway.start)
    worker.start()
    try:
        members = []
        for user, token in zip(users[1:], tokens[1:]):
            device = await database_sync_to_async(make_device)(user)
            members.append(ParleyClient([gateway.url], token=token, device_id=str(device.pk), keep_frames=True))
        runners = [asyncio.create_task(c.run()) for c in members]
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in members)), 30)
        await asyncio.gather(*(asyncio.to_thread(rest_send, gateway.url, tokens[0], channel.pk, f"b{i}")
                               for i in range(60)))
        await wait_all_have(members, channel.pk, 60)
        assert_exactly_once_in_order(members, channel.pk, 60)
        for client in members:
            batches = [f for f in client.frames if f["type"] == "messages" and f["messages"]]
            assert batches and not [f for f in client.frames if f["type"] == "message"]
            assert any(len(f["messages"]) > 1 for f in batches)  # a window really batched
            await client.stop()
        for r in runners:
            r.cancel()
    finally:
        errors = worker.stop() + gateway.stop()
        print(errors)  # shown by pytest when the test fails
    assert "Traceback" not in errors


async def test_a_gateway_serving_sockets_is_ready(people, gateways):
    """/readyz must not wait behind the hub's receive (a load balancer routing on /readyz would
    otherwise take every busy gateway out)."""
    group, devices, tokens = people
    (gateway,) = await asyncio.to_thread(gateways, 1)
    client = ParleyClient([gateway.url], token=tokens["bob"], device_id=devices["bob"][0])
    runner = asyncio.create_task(client.run())
    await asyncio.wait_for(client.ready.wait(), 30)

    def readyz() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{gateway.url}/readyz", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    for _ in range(3):
        assert await asyncio.to_thread(readyz) == (200, {"status": "ok", "checks": {
            "database": "ok", "channel_layer": "ok"}})
    await client.stop()
    runner.cancel()


async def test_a_new_device_of_a_user_who_read_everything_follows_live_from_where_the_server_resumed(
    people, gateways, make_device
):
    """No cursors, nothing owed (the user read it all elsewhere): the server sends no page,
    and the reference client must take up the stream at ready's last_seq, not wait for 1."""
    group, devices, tokens = people
    (gateway,) = await asyncio.to_thread(gateways, 1)
    for i in range(3):
        await asyncio.to_thread(rest_send, gateway.url, tokens["bob"], group.pk, f"old{i}")
    alice = await database_sync_to_async(lambda: group.memberships.get(user__username="alice").user)()
    laptop = await database_sync_to_async(make_device)(alice, "new laptop")
    await asyncio.to_thread(rest_send, gateway.url, tokens["alice"], group.pk, "seen")  # alice read up to 4
    client = ParleyClient([gateway.url], token=tokens["alice"], device_id=str(laptop.pk))
    runner = asyncio.create_task(client.run())
    await asyncio.wait_for(client.ready.wait(), 30)
    for i in range(3):
        await asyncio.to_thread(rest_send, gateway.url, tokens["bob"], group.pk, f"new{i}")
    await wait_all_have([client], group.pk, 7, timeout=20)
    assert client.shown[group.pk] == [5, 6, 7] and client.violations == []
    await client.stop()
    runner.cancel()
