"""The channel layer (chatproject/layers.py): channels-redis' semantics in fewer round trips.

Each test runs the same steps on Parley's class and on the stock one, against the real Redis,
and expects the same outcome.
"""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis
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
    receive puts it back in front (channels-redis' guarantee against losing it). A plain
    channel, taken one message at a time by both classes; a process channel's batch is
    interrupted in test_a_batch_an_interrupted_receive_took_comes_back_first_in_order."""
    layer = make(layer_class)
    channel = "work.backup"
    await layer.send(channel, {"type": "x", "n": 1})
    await layer.send(channel, {"type": "x", "n": 2})
    key = layer.prefix + channel
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


@BOTH
async def test_groups_added_at_once_each_reach_their_channels(layer_class):
    layer = make(layer_class)
    channels = [await layer.new_channel("gateway.") for _ in range(3)]
    await asyncio.gather(*(layer.group_add(f"device.{n}", channel)
                           for n in range(200) for channel in channels[: 1 + n % 3]))
    for n in (0, 1, 2, 199):
        await layer.group_send(f"device.{n}", {"type": "conv.message", "n": n})
    got = {channel: [] for channel in channels}
    for channel in channels:
        while True:
            try:
                got[channel].append((await asyncio.wait_for(layer.receive(channel), 0.3))["n"])
            except asyncio.TimeoutError:
                break
    assert got == {channels[0]: [0, 1, 2, 199], channels[1]: [1, 2, 199], channels[2]: [2]}
    ttl = await layer.connection(0).ttl(layer._group_key("device.7"))
    assert 0 < ttl <= layer.group_expiry
    await layer.flush()


async def test_a_storm_of_group_adds_shares_a_few_connections_instead_of_one_each():
    """A reconnect storm's sockets add their groups at once; each add on a connection of its
    own grew the pool by hundreds of connections."""
    layer = make(RedisChannelLayer)
    channel = await layer.new_channel("gateway.")
    await asyncio.gather(*(layer.group_add(f"device.{n}", channel) for n in range(500)))
    pool = layer.connection(0).connection_pool
    assert len(pool._available_connections) + len(pool._in_use_connections) <= 2
    assert await layer.connection(0).zscore(layer._group_key("device.499"), channel) is not None
    await layer.flush()


async def test_every_caller_of_a_failed_group_add_pipeline_hears_the_error():
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1/0"], prefix="t-unreachable")
    results = await asyncio.gather(*(layer.group_add(f"device.{n}", "gateway.x!y") for n in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(result, redis.ConnectionError) for result in results), results
    assert layer._pending_adds == {}


async def test_waiting_since_is_the_send_time_of_the_oldest_message_not_yet_received():
    """Degraded mode's layer backlog (gateway.hub.layer_backlog): what waits for a process in
    Redis, seen without receiving it; the stock layer's key layout and scores, read."""
    layer = make(RedisChannelLayer)
    channel, other = await layer.new_channel("gateway."), await layer.new_channel("gateway.")
    assert await layer.waiting_since(channel) is None
    await layer.group_add("conv.1", channel)
    before = time.time()
    await layer.group_send("conv.1", {"type": "conv.message", "n": 1})
    await asyncio.sleep(0.05)
    await layer.group_send("conv.1", {"type": "conv.message", "n": 2})
    first_sent = await layer.waiting_since(channel)
    assert first_sent is not None and before <= first_sent < before + 0.05
    assert await layer.waiting_since(other) == first_sent  # one process's channels share its key
    assert (await layer.receive(channel))["n"] == 1  # the receive took both: none waits in Redis
    assert await layer.waiting_since(channel) is None
    await layer.group_send("conv.1", {"type": "conv.message", "n": 3})
    assert await layer.waiting_since(channel) > first_sent  # now the third one's
    assert [(await layer.receive(channel))["n"] for _ in range(2)] == [2, 3]
    assert await layer.waiting_since(channel) is None
    await layer.flush()


async def test_a_backlog_is_received_in_batches_in_order_across_the_process_channels():
    """The hub's receive takes what waits in one round trip, up to receive_batch: a backlog
    of 250 leaves 150 in Redis after the first receive; every channel of the process still
    gets each of its messages once, in order, across the batches' boundaries."""
    layer = make(RedisChannelLayer, capacity=1000)
    assert layer.receive_batch == 100
    hub, other = await layer.new_channel("gateway."), await layer.new_channel("gateway.")
    await layer.group_add("conv.1", hub)
    await layer.group_add("conv.2", other)
    await layer.group_add("conv.2", hub)
    for n in range(250):
        await layer.group_send("conv.1" if n % 2 else "conv.2", {"type": "conv.message", "n": n})
    key = layer.prefix + layer.non_local_name(hub)
    first = await layer.receive(hub)
    assert first["n"] == 0
    assert await layer.connection(layer.consistent_hash(hub)).zcard(key) == 150
    got_hub = [0] + [(await layer.receive(hub))["n"] for _ in range(249)]
    got_other = [(await layer.receive(other))["n"] for _ in range(125)]
    assert got_hub == list(range(250))
    assert got_other == list(range(0, 250, 2))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(hub), 0.3)
    await layer.flush()


async def test_a_batch_an_interrupted_receive_took_comes_back_first_in_order():
    layer = make(RedisChannelLayer)
    channel = await layer.new_channel("gateway.")
    for n in range(5):
        await layer.send(channel, {"type": "x", "n": n})
    key = layer.prefix + layer.non_local_name(channel)
    taken = await layer._take(layer.consistent_hash(channel), key, 3, timeout=1)  # then "interrupted"
    assert [layer.deserialize(content)["n"] for content in taken] == [0, 1, 2]
    assert [(await layer.receive(channel))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    await layer.flush()


def test_a_batch_never_exceeds_what_a_channel_buffer_holds():
    """channels-redis' receive buffer drops its oldest message when full."""
    assert make(RedisChannelLayer, capacity=3).receive_batch == 3
    assert make(RedisChannelLayer, capacity=1000, receive_batch=10).receive_batch == 10
    with pytest.raises(ValueError):
        make(RedisChannelLayer, receive_batch=0)


async def test_a_blocking_group_send_reaches_channels_as_an_async_one_does_in_order_and_within_capacity():
    """A sync send publishes from its own thread with the blocking client (messaging.layer):
    the same keys, script, order and capacity as group_send, interleaved with it."""
    layer = make(RedisChannelLayer, capacity=6)
    first, second = await layer.new_channel("gateway."), await layer.new_channel("gateway.")
    for channel in (first, second):
        await layer.group_add("conv.3", channel)
    for n in range(8):
        if n % 2:
            await layer.group_send("conv.3", {"type": "conv.message", "n": n})
        else:
            await asyncio.to_thread(layer.group_send_blocking, "conv.3", {"type": "conv.message", "n": n}, timeout=2)
    for channel in (first, second):
        assert [(await layer.receive(channel))["n"] for _ in range(6)] == [0, 1, 2, 3, 4, 5]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.3)  # 6 and 7 were over capacity
    await asyncio.to_thread(layer.group_send_blocking, "conv.nobody", {"type": "conv.message"}, timeout=2)
    await layer.flush()


def test_a_blocking_group_send_to_a_redis_that_never_answers_gives_up_within_its_timeout():
    """A frozen Redis (or a half-open connection) accepts and never answers: the sending
    thread gets TimeoutError within the publish's bound, not a hang."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or writes
        layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{silent.getsockname()[1]}/0"], prefix="t-silent")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            layer.group_send_blocking("conv.1", {"type": "conv.message"}, timeout=0.6)
        assert time.monotonic() - started < 1.5


def test_only_plain_addresses_are_sent_to_with_the_blocking_client():
    assert make(RedisChannelLayer).can_send_blocking
    sentinel = RedisChannelLayer(hosts=[{"sentinels": [("127.0.0.1", 26379)], "master_name": "main"}], prefix="t-s")
    assert not sentinel.can_send_blocking
