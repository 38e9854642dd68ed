"""The channel layer (chatproject/layers.py): channels-redis' semantics in fewer round trips.

Each test runs the same steps on Parley's class and on the stock one, against the real Redis,
and expects the same outcome.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest
from channels_redis.core import RedisChannelLayer as StockLayer
from django.conf import settings

from chatproject.layers import RedisChannelLayer

pytestmark = pytest.mark.redis

BOTH = pytest.mark.parametrize("layer_class", [RedisChannelLayer, StockLayer], ids=["parley", "stock"])


def make(layer_class: type, **config) -> StockLayer:
    return layer_class(hosts=[settings.CHANNEL_REDIS_URLS[0]], prefix=f"t{uuid.uuid4().hex[:8]}", **config)


def test_the_settings_use_it_when_redis_is_configured():
    from chatproject import settings as configured

    assert configured.CHANNEL_LAYERS["default"]["BACKEND"] == "chatproject.layers.RedisChannelLayer"


@BOTH
async def test_a_group_message_reaches_each_process_channel_once_in_order(layer_class):
    layer = make(layer_class)
    first, second = await layer.new_channel("gateway."), await layer.new_channel("gateway.")
    for channel in (first, second):
        await layer.group_add("conv.1", channel)
    for n in range(5):
        await layer.group_send("conv.1", {"type": "conv.message", "n": n})
    for channel in (first, second):
        assert [(await layer.receive(channel))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    await layer.group_discard("conv.1", second)
    await layer.group_send("conv.1", {"type": "conv.message", "n": 5})
    assert (await layer.receive(first))["n"] == 5
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(second), 0.3)
    await layer.flush()


@BOTH
async def test_a_full_channel_drops_group_messages_beyond_its_capacity(layer_class):
    layer = make(layer_class, capacity=3)
    channel = await layer.new_channel("gateway.")
    await layer.group_add("conv.1", channel)
    for n in range(5):
        await layer.group_send("conv.1", {"type": "conv.message", "n": n})
    assert [(await layer.receive(channel))["n"] for _ in range(3)] == [0, 1, 2]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.3)
    await layer.flush()


@BOTH
async def test_a_message_an_interrupted_receive_left_in_the_backup_queue_comes_first(layer_class):
    """A receive cancelled after taking a message leaves it in the backup queue; the next
    receive puts it back in front (channels-redis' guarantee against losing it)."""
    layer = make(layer_class)
    channel = await layer.new_channel("gateway.")
    await layer.send(channel, {"type": "x", "n": 1})
    await layer.send(channel, {"type": "x", "n": 2})
    key = layer.prefix + layer.non_local_name(channel)
    taken = await layer._brpop_with_clean(layer.consistent_hash(channel), key, timeout=1)  # then "interrupted"
    assert layer.deserialize(taken)["n"] == 1
    assert [(await layer.receive(channel))["n"] for _ in range(2)] == [1, 2]
    await layer.flush()


@BOTH
async def test_a_receive_waits_for_a_message_sent_after_it_began(layer_class):
    layer = make(layer_class)
    channel = await layer.new_channel("gateway.")
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await layer.group_add("conv.2", channel)
    await layer.group_send("conv.2", {"type": "conv.message", "n": 7})
    assert (await asyncio.wait_for(waiting, 3))["n"] == 7
    await layer.flush()
