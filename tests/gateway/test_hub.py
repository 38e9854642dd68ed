"""A channel layer spread over several Redis servers: a restart of any one is noticed."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from gateway.db import DatabaseThreads
from gateway.hub import GatewayHub
from tests.live import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def two_servers():
    servers = [RedisServer(), RedisServer()]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


async def test_the_hub_notices_a_restart_of_a_server_that_does_not_hold_its_channel(two_servers, monkeypatch):
    """Only the server holding the hub's own channel makes its receive fail; the groups on
    the other one would be forgotten silently (until the hourly refresh) without this check."""
    hub = GatewayHub(db=DatabaseThreads(1), on_receipts=lambda event: None)
    layer = RedisChannelLayer(hosts=[server.url for server in two_servers])
    monkeypatch.setattr(GatewayHub, "layer", layer, raising=False)
    assert await hub._a_shard_restarted() is False  # first look: nothing to compare with
    assert await hub._a_shard_restarted() is False
    await asyncio.to_thread(two_servers[1].restart, 0.2)
    assert await hub._a_shard_restarted() is True
    assert await hub._a_shard_restarted() is False  # noticed once
    await layer.flush()


class _SlowLayer:
    async def waiting_since(self, channel):
        await asyncio.sleep(10)


class _BrokenLayer:
    async def waiting_since(self, channel):
        raise ConnectionError("Redis is gone")


async def test_the_layer_backlog_is_the_age_of_the_oldest_event_waiting_for_the_hub(monkeypatch):
    """Degraded mode's view of a flood that outruns the hub's receive: the events pile up in
    Redis, where only this probe sees them before the receive loop gets to them."""
    from chatproject.layers import RedisChannelLayer as ParleyLayer

    layer = ParleyLayer(hosts=[settings.CHANNEL_REDIS_URLS[0]], prefix=f"t{uuid.uuid4().hex[:8]}")
    monkeypatch.setattr(GatewayHub, "layer", layer, raising=False)
    hub = GatewayHub(db=DatabaseThreads(1), on_receipts=lambda event: None)
    hub.channel = await layer.new_channel("gateway.")
    await layer.group_add("conv.7", hub.channel)
    assert await hub.layer_backlog(timeout=1) == 0.0
    await layer.group_send("conv.7", {"type": "conv.typing", "conversation": 7, "user": 1})
    await asyncio.sleep(0.3)
    assert 0.3 <= await hub.layer_backlog(timeout=1) < 2
    await layer.receive(hub.channel)
    assert await hub.layer_backlog(timeout=1) == 0.0
    await layer.flush()


async def test_a_layer_slower_than_the_probes_bound_counts_as_that_much_backlog(monkeypatch):
    hub = GatewayHub(db=DatabaseThreads(1), on_receipts=lambda event: None)
    hub.channel = "gateway.x!y"
    monkeypatch.setattr(GatewayHub, "layer", _SlowLayer(), raising=False)
    assert await hub.layer_backlog(timeout=0.1) == 0.1
    monkeypatch.setattr(GatewayHub, "layer", _BrokenLayer(), raising=False)
    assert await hub.layer_backlog(timeout=0.1) == 0.0  # the receive loop reports and repairs outages


async def test_a_layer_that_cannot_tell_has_no_backlog(monkeypatch):
    from channels.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    monkeypatch.setattr(GatewayHub, "layer", layer, raising=False)
    hub = GatewayHub(db=DatabaseThreads(1), on_receipts=lambda event: None)
    hub.channel = await layer.new_channel("gateway.")
    await layer.send(hub.channel, {"type": "x"})
    assert await hub.layer_backlog(timeout=1) == 0.0
