"""Operations across real processes: daphne gateways on PostgreSQL and a private Redis."""
from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from messaging.models import Message
from ops import canary
from ops.client import ParleyClient
from ops.tasks import canary_run
from tests.live import gateways, redis_server  # noqa: F401 - fixtures

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pair(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    return group, {u.username: Token.objects.create(user=u).key for u in (alice, bob)}, \
        {u.username: str(make_device(u).pk) for u in (alice, bob)}


def post(url: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and not line.startswith("#")}


async def open_ws(base: str, token: str, device: str):
    ticket = (await asyncio.to_thread(post, f"{base}/api/v1/ws-ticket", token, {}))["ticket"]
    ws = await websockets.connect(f"{base.replace('http', 'ws')}/ws/v1/?device={device}&ticket={ticket}")
    await ws.send(json.dumps({"type": "hello"}))
    while json.loads(await ws.recv())["type"] != "ready":
        pass
    return ws


async def test_metrics_of_every_gateway_process_add_up_on_any_of_them(pair, gateways, tmp_path):
    group, tokens, devices = pair
    g1, g2 = await asyncio.to_thread(gateways, 2, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for i, gateway in enumerate((g1, g2)):
        await asyncio.to_thread(post, f"{gateway.url}/api/v1/conversations/{group.pk}/messages", tokens["alice"],
                                {"client_msg_id": f"k{i}", "body": "hi"})
    ws = await open_ws(g2.url, tokens["bob"], devices["bob"])
    for gateway in (g1, g2):
        samples = await asyncio.to_thread(scrape, gateway.url)
        assert samples["parley_messages_stored_total"] == 2
        assert samples["parley_open_connections"] == 1
        assert samples['parley_reconnects_total{outcome="fresh"}'] == 1
    await ws.close()


async def test_a_real_gateway_times_its_garbage_collections_on_metrics(pair, gateways):
    """gateway.heap, wired into parley-gateway: thresholds this low make collections at once."""
    group, tokens, devices = pair
    (gateway,) = await asyncio.to_thread(gateways, 1, PARLEY_GATEWAY_GC_THRESHOLDS="50,2,2")
    ws = await open_ws(gateway.url, tokens["bob"], devices["bob"])
    for i in range(3):
        await asyncio.to_thread(post, f"{gateway.url}/api/v1/conversations/{group.pk}/messages", tokens["alice"],
                                {"client_msg_id": f"gc{i}", "body": "hi"})
    await asyncio.sleep(1.5)  # the tick hands the recorded pauses to the histogram
    samples = await asyncio.to_thread(scrape, gateway.url)
    assert samples['parley_gc_pause_seconds_count{generation="0"}'] > 0
    assert samples['parley_gc_pause_seconds_count{generation="2"}'] > 0
    await ws.close()


async def test_a_gateway_shutting_down_spreads_its_clients_with_a_reconnect_hint_and_1012(pair, gateways):
    group, tokens, devices = pair
    [gateway] = await asyncio.to_thread(gateways, 1, PARLEY_RESTART_RECONNECT_RATE="1")
    sockets = [await open_ws(gateway.url, tokens["bob"], devices["bob"]) for _ in range(3)]
    gateway.process.send_signal(signal.SIGTERM)
    hints = []
    for ws in sockets:
        frames = []
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                frames.append(json.loads(await ws.recv()))
        [hint] = [f for f in frames if f["type"] == "reconnect"]
        hints.append(hint["after_ms"])
        assert ws.close_code == 1012
    assert all(0 <= after <= 3000 for after in hints)  # 3 sockets at 1 per second
    assert len(set(hints)) > 1
    await asyncio.to_thread(gateway.process.wait, 15)
    assert "Traceback" not in gateway.stop()


async def test_the_reference_client_comes_back_on_another_gateway_after_a_restart(pair, gateways):
    group, tokens, devices = pair
    g1, g2 = await asyncio.to_thread(gateways, 2)
    bob = ParleyClient([g1.url, g2.url], token=tokens["bob"], device_id=devices["bob"])
    run = asyncio.create_task(bob.run())
    await asyncio.wait_for(bob.ready.wait(), 30)
    g1.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(post, f"{g2.url}/api/v1/conversations/{group.pk}/messages", tokens["alice"],
                            {"client_msg_id": "after", "body": "still there?"})
    for _ in range(300):
        if bob.cursors.get(group.pk) == 1:
            break
        await asyncio.sleep(0.1)
    assert bob.shown[group.pk] == [1] and bob.connections == 2 and bob.violations == []
    await bob.stop()
    run.cancel()


def test_the_canary_times_a_message_from_one_socket_to_another(gateways, settings, metrics):
    [gateway] = gateways(1)
    settings.PARLEY_CANARY_URLS = [gateway.url]
    metrics.take()
    latency = canary_run.apply().get()
    assert 0 < latency < 5
    assert canary.run_canary(timeout=20) is not None  # the same user, devices and conversation again
    assert Message.objects.filter(sender__username=canary.USERNAME).count() == 2
    assert metrics.delta("parley_canary_runs_total", outcome="ok") == 2
    assert metrics.delta("parley_canary_send_to_deliver_seconds_count") == 2
    assert metrics.value("parley_canary_last_success_timestamp_seconds") > 0

    assert canary.run_canary(urls=["http://127.0.0.1:9"], timeout=1) is None  # nothing listens there
    assert metrics.delta("parley_canary_runs_total", outcome="failed") == 1


async def test_a_flood_of_frames_on_a_real_gateway_tells_every_client_that_typing_is_shed(
        make_user, make_device, make_group, gateways):
    """The whole path of degraded mode on a real gateway, untimed: what the process measures
    (frames waiting to be handled, stamped on arrival by parley-gateway's protocol; the loop;
    the hub; the database threads), the tick, the shared window, the decision, and a
    ``degraded`` frame to the sockets. The flood: 30 sockets each sending 200 typing frames at
    once (the lag threshold is lowered so that any machine lags enough). How soon clients are
    told is measured by the load benchmark's degraded scenario."""
    # Rows through database_sync_to_async, not asyncio.to_thread: tests/live.py says why.
    owner = await database_sync_to_async(make_user)("owner")
    users = await database_sync_to_async(lambda: [make_user(f"typist{i}") for i in range(30)])()
    group = await database_sync_to_async(make_group)(owner, users)
    tokens = await database_sync_to_async(lambda: {u.pk: Token.objects.create(user=u).key for u in [owner, *users]})()
    devices = await database_sync_to_async(lambda: {u.pk: str(make_device(u).pk) for u in [owner, *users]})()
    (gateway,) = await asyncio.to_thread(gateways, 1, PARLEY_DEGRADED_GATEWAY_LAG_MS="50",
                                         PARLEY_TYPING_THROTTLE_MS="0", PARLEY_DEGRADED_QUEUES="")
    watcher = await open_ws(gateway.url, tokens[owner.pk], devices[owner.pk])
    typists = [await open_ws(gateway.url, tokens[u.pk], devices[u.pk]) for u in users]
    typing = json.dumps({"type": "typing", "conversation": group.pk})
    for ws in typists:
        for _ in range(200):
            await ws.send(typing)

    async def told() -> list[str]:
        while True:
            frame = json.loads(await watcher.recv())
            if frame["type"] == "degraded":
                return frame["shed"]

    assert await asyncio.wait_for(told(), 60) == ["typing", "presence"]
    for ws in [watcher, *typists]:
        await ws.close()
    log = await asyncio.to_thread(gateway.stop)
    assert "Traceback" not in log, log[-3000:]
