"""The change stream across real processes: daphne gateways on PostgreSQL and a private Redis,
driven by the reference client (ops.client) following changes (issue 12, "Done when")."""
from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from messaging.models import Conversation
from messaging.send import do_send_message
from ops.client import ParleyClient
from tests.live import gateways, redis_server  # noqa: F401 - fixtures

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

EMOJI = ["👍", "🎉", "😂", "❤️"]


@pytest.fixture
def people(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    messages = [do_send_message(sender=alice if i % 2 else bob, conversation_id=group.pk, client_msg_id=f"m{i}",
                                body=f"message {i}").message.pk for i in range(4)]
    devices = {u.username: [str(make_device(u, f"d{i}").pk) for i in range(2)] for u in (alice, bob)}
    tokens = {u.username: Token.objects.create(user=u).key for u in (alice, bob)}
    senders = {pk: ("bob" if i % 2 == 0 else "alice") for i, pk in enumerate(messages)}
    return group, messages, senders, devices, tokens


def rest(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{base}/api/v1/{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def toggle_reaction(base: str, token: str, message: int, emoji: str, on: bool) -> dict:
    if on:
        return rest(base, token, "POST", f"messages/{message}/reactions", {"emoji": emoji})
    return rest(base, token, "DELETE", f"messages/{message}/reactions/{quote(emoji)}")


async def wait_for_changes(clients, conversation: int, last_change: int, timeout: float = 60) -> None:
    async def have_all():
        while any(c.change_cursors.get(conversation, 0) < last_change for c in clients):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(have_all(), timeout)


@database_sync_to_async  # not asyncio.to_thread: tests/live.py says why
def last_change(conversation: int) -> int:
    return Conversation.objects.values_list("last_change", flat=True).get(pk=conversation)


def assert_every_change_once_in_order(clients, conversation: int, count: int) -> None:
    for client in clients:
        assert client.violations == []
        assert client.changes_applied[conversation] == list(range(1, count + 1))


async def start(clients):
    runners = [asyncio.create_task(c.run()) for c in clients]
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 30)
    return runners


async def stop(clients, runners):
    for client in clients:
        await client.stop()
    for runner in runners:
        runner.cancel()


async def test_concurrent_edits_and_reactions_on_two_gateways_reach_every_device_gap_free_in_order(people, gateways):
    group, messages, senders, devices, tokens = people
    g1, g2 = await asyncio.to_thread(gateways, 2)
    clients = [ParleyClient([base], token=tokens[name], device_id=device, follow_changes=True)
               for name, base in (("alice", g1.url), ("bob", g2.url)) for device in devices[name]]
    runners = await start(clients)

    async def editor(name: str, base: str, rounds: int):
        mine = [m for m in messages if senders[m] == name]
        for i in range(rounds):
            await asyncio.to_thread(rest, base, tokens[name], "PATCH", f"messages/{mine[i % 2]}", {"body": f"{name} {i}"})

    async def reactor(name: str, base: str, rounds: int, seed: int):
        rng = random.Random(seed)
        for _ in range(rounds):
            await asyncio.to_thread(toggle_reaction, base, tokens[name], rng.choice(messages), rng.choice(EMOJI),
                                    rng.random() < 0.6)

    await asyncio.gather(editor("alice", g1.url, 40), editor("bob", g2.url, 40),
                         reactor("alice", g2.url, 60, 1), reactor("bob", g1.url, 60, 2),
                         reactor("alice", g1.url, 60, 3), reactor("bob", g2.url, 60, 4))
    total = await last_change(group.pk)
    assert total >= 80
    await wait_for_changes(clients, group.pk, total)
    assert_every_change_once_in_order(clients, group.pk, total)
    final = await asyncio.to_thread(rest, g1.url, tokens["alice"], "GET", f"conversations/{group.pk}/messages")
    for message in final["messages"]:
        for client in clients:  # every device ends with the store's state of every message
            held = client.messages.get(message["id"], message)
            assert (held["body"], held["reactions"], held["version"]) == (
                message["body"], message["reactions"], message["version"])
    await stop(clients, runners)
    errors = g1.stop() + g2.stop()
    assert "Traceback" not in errors


async def test_a_device_away_during_300_changes_gets_each_once_on_either_gateway(people, gateways):
    group, messages, senders, devices, tokens = people
    g1, g2 = await asyncio.to_thread(gateways, 2)
    bob = ParleyClient([g1.url], token=tokens["bob"], device_id=devices["bob"][0], follow_changes=True)
    runners = await start([bob])
    await stop([bob], runners)  # away from here on, holding change cursor 0

    for i in range(150):
        await asyncio.to_thread(toggle_reaction, g2.url, tokens["alice"], messages[0], "👍", True)
        await asyncio.to_thread(toggle_reaction, g2.url, tokens["alice"], messages[0], "👍", False)
    bob = ParleyClient([g2.url], token=tokens["bob"], device_id=devices["bob"][0], follow_changes=True,
                       change_cursors=dict(bob.change_cursors), cursors=dict(bob.cursors), keep_frames=True)
    runners = await start([bob])
    await wait_for_changes([bob], group.pk, 300)
    assert_every_change_once_in_order([bob], group.pk, 300)
    pages = [f for f in bob.frames if f["type"] == "changes"]
    assert len(pages) == 2 and all(len(p["changes"]) <= 200 for p in pages)
    await stop([bob], runners)


async def test_a_gateway_killed_mid_stream_loses_no_change(people, gateways):
    group, messages, senders, devices, tokens = people
    g1, g2 = await asyncio.to_thread(gateways, 2)
    bob = [ParleyClient([g1.url, g2.url], token=tokens["bob"], device_id=d, follow_changes=True, backoff_base=0.05)
           for d in devices["bob"]]
    runners = await start(bob)

    async def alice_changes():
        for i in range(300):  # 12 reactions on, then the same 12 off, and again: each one a change
            await asyncio.to_thread(toggle_reaction, g2.url, tokens["alice"], messages[i % 4], EMOJI[(i // 4) % 3],
                                    (i // 12) % 2 == 0)

    changing = asyncio.create_task(alice_changes())
    await wait_for_changes(bob, group.pk, 50)
    await asyncio.to_thread(g1.kill)  # SIGKILL: no drain, no goodbye
    await changing
    assert await last_change(group.pk) == 300
    await wait_for_changes(bob, group.pk, 300)
    assert_every_change_once_in_order(bob, group.pk, 300)
    assert all(c.connections >= 2 for c in bob)
    await stop(bob, runners)
