"""A channel layer spread over several Redis servers: a restart of any one is noticed."""
from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer

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
