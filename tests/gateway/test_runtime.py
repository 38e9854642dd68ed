"""One gateway runtime per event loop (gateway.runtime): shared by the loop's sockets, started once,
gone when stopped."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import OperationalError, connection
from psycopg_pool import PoolTimeout

from gateway import runtime
from gateway.db import DatabaseThreads
from gateway.notices import Degraded
from messaging.errors import Unavailable
from messaging.models import User
from ops import degraded, metrics

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_sockets_of_a_loop_share_one_runtime_started_once():
    assert runtime.running(asyncio.get_running_loop()) is None  # nothing starts one but a socket
    first, second = await asyncio.gather(runtime.current(), runtime.current())
    assert first is second
    assert runtime.running(asyncio.get_running_loop()) is first
    assert first.hub.channel is not None  # its layer channel is open
    await first.stop()


async def test_a_stopped_runtime_is_forgotten_and_the_next_socket_gets_a_fresh_one():
    first = await runtime.current()
    await first.stop()
    assert runtime.running(asyncio.get_running_loop()) is None
    second = await runtime.current()
    assert second is not first
    await second.stop()


async def test_sockets_of_the_runtime_share_its_hub(make_user, make_device, open_socket):
    from channels.db import database_sync_to_async

    alice = await database_sync_to_async(make_user)("alice")
    phone = await database_sync_to_async(make_device)(alice, "phone")
    laptop = await database_sync_to_async(make_device)(alice, "laptop")
    await open_socket(alice, phone)
    await open_socket(alice, laptop)
    gateway = await runtime.current()
    assert len(gateway.sockets) == 2
    assert len(gateway.hub.sockets_of(f"user.{alice.pk}")) == 2


async def test_a_database_call_that_waited_in_vain_for_a_pooled_connection_is_unavailable_with_a_retry_hint():
    """What Django raises when the pool ran dry (OperationalError from PoolTimeout) reaches the
    socket as ``unavailable`` with a retry hint, like REST's 503; other database errors pass."""
    def starved() -> None:
        try:
            raise PoolTimeout("couldn't get a connection after 0.01 sec")
        except PoolTimeout as error:
            raise OperationalError(str(error)) from error

    def broken() -> None:
        raise OperationalError("server closed the connection unexpectedly")

    db = DatabaseThreads(size=1)
    try:
        with pytest.raises(Unavailable) as refused:
            await db(starved)()
        assert refused.value.retry_after_ms == 1000
        with pytest.raises(OperationalError):
            await db(broken)()
    finally:
        db.shutdown()


@pytest.mark.postgres
async def test_a_database_call_gives_its_pooled_connection_back_even_with_channels_cleanup_patched_out():
    # channels.testing swaps channels.db.close_old_connections for a no-op while a communicator
    # waits; a call finishing then once kept its connection, and a long session ran the pool dry.
    def lent_out() -> int:
        stats = connection.pool.get_stats()
        return stats.get("pool_size", 0) - stats.get("pool_available", 0)

    def query() -> int:
        return User.objects.count()

    db = DatabaseThreads(size=2)
    try:
        await db(query)()  # the pool exists and has lent and taken back one
        before = lent_out()
        with mock.patch("channels.db.close_old_connections", lambda: None):
            for _ in range(5):
                await db(query)()
                await db.control(query)()
        assert lent_out() == before
    finally:
        db.shutdown()


async def test_each_tick_counts_the_layers_backlog_as_the_processs_lag(settings, monkeypatch):
    """Events waiting for the hub in Redis make a tick late even when the loop, the sockets'
    queues and the database threads are all on time (a flood that outruns the receive loop)."""
    settings.PARLEY_GATEWAY_TICK_SECONDS = 0.05
    settings.PARLEY_DEGRADED_GATEWAY_LAG_MS = 500
    gateway = runtime.GatewayRuntime()
    asked = []

    async def backlog(*, timeout: float) -> float:
        asked.append(timeout)
        return 0.8

    async def shared_tick(**kwargs):  # the shared window's part is ops.degraded's (tested there)
        return gateway.mode

    monkeypatch.setattr(gateway.hub, "layer_backlog", backlog)
    monkeypatch.setattr(gateway, "tick", shared_tick)
    ticking = asyncio.get_running_loop().create_task(gateway._tick_loop())
    await asyncio.sleep(0.3)
    ticking.cancel()
    await asyncio.gather(ticking, return_exceptions=True)
    gateway.db.shutdown()
    counts = gateway.counts.window.take(sockets=0)
    assert counts["ticks"] >= 2 and counts["late_ticks"] == counts["ticks"]
    assert asked and all(timeout == 0.05 for timeout in asked)  # bounded by the tick
    assert metrics.LAYER_BACKLOG._value.get() == 0.8


class _Socket:
    def __init__(self) -> None:
        self.notices: list = []

    def deliver(self, event) -> None:
        self.notices.append(event)


async def test_a_level_another_gateway_decided_reaches_this_ones_sockets_between_its_ticks(settings):
    """Each gateway follows the shared state every PARLEY_DEGRADED_FOLLOW_SECONDS: under a
    flood the first gateway to see it decides, and the others' sockets hear it within that,
    not at their next tick (their own tick is an hour away here)."""
    settings.PARLEY_GATEWAY_TICK_SECONDS = 3600
    settings.PARLEY_DEGRADED_FOLLOW_SECONDS = 0.05
    gateway = runtime.GatewayRuntime()
    socket = _Socket()
    gateway.sockets.add(socket)  # type: ignore[arg-type]
    following = asyncio.get_running_loop().create_task(gateway._follow_loop())
    try:
        await asyncio.sleep(0.2)
        assert socket.notices == []  # nothing changed
        await asyncio.to_thread(cache.set, degraded.STATE_KEY, {"level": 1, "forced": False}, None)
        await asyncio.sleep(0.3)
        assert socket.notices == [Degraded(("typing", "presence"))]
        assert gateway.mode == degraded.Mode(level=1)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        gateway.db.shutdown()
        await asyncio.to_thread(cache.delete, degraded.STATE_KEY)
        await asyncio.to_thread(degraded.refresh)


def test_a_follow_interval_that_would_read_the_cache_in_a_busy_loop_is_refused_at_start():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatproject.settings", "PARLEY_DEGRADED_FOLLOW_SECONDS": "0"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "PARLEY_DEGRADED_FOLLOW_SECONDS is a positive number" in result.stderr


async def test_typing_that_goes_on_counts_as_the_typing_share_of_the_work_and_presence_does_not(
        make_user, make_device, make_group, open_socket, settings):
    """Degraded mode's lower gateway-lag line applies while typing is most of the sockets'
    work: a typing frame that goes on and each typing event written to a socket count; frames
    and events dropped anyway (a sender's own typing, typing while it is shed) do not, and
    neither does presence (it comes in bursts with connections, which are no flood)."""
    from channels.db import database_sync_to_async

    settings.PARLEY_TYPING_THROTTLE_MS = 0
    alice, bob, carol = [await database_sync_to_async(make_user)(name) for name in ("alice", "bob", "carol")]
    group = await database_sync_to_async(make_group)(alice, [bob, carol])
    alice_socket = await open_socket(alice, await database_sync_to_async(make_device)(alice))
    bob_socket = await open_socket(bob, await database_sync_to_async(make_device)(bob))
    await alice_socket.recv_type("presence")  # bob came online
    counts = (await runtime.current()).counts
    counts.take_typing_share()
    await open_socket(carol, await database_sync_to_async(make_device)(carol))
    assert (await alice_socket.recv_type("presence"))["user"] == carol.pk
    assert (await bob_socket.recv_type("presence"))["user"] == carol.pk
    assert counts.frames >= 2 and counts.typing_frames == 0
    counts.take_typing_share()

    await alice_socket.send({"type": "typing", "conversation": group.pk})
    assert (await bob_socket.recv_type("typing"))["user"] == alice.pk
    await asyncio.sleep(0.1)  # alice's and carol's sockets handle the event too
    # alice's frame, the event on each of three sockets; the frame, bob's and carol's copies
    # went on (alice's own was dropped).
    assert (counts.frames, counts.typing_frames) == (4, 3)

    counts.take_typing_share()
    await asyncio.to_thread(cache.set, degraded.STATE_KEY, {"level": 1, "forced": True}, None)
    await asyncio.to_thread(degraded.refresh)
    try:
        await alice_socket.send({"type": "typing", "conversation": group.pk})
        await alice_socket.send({"type": "ping"})
        await alice_socket.recv_type("pong")  # the typing frame before it was handled, and shed
        assert (counts.frames, counts.typing_frames) == (2, 0)
    finally:
        await asyncio.to_thread(cache.delete, degraded.STATE_KEY)
        await asyncio.to_thread(degraded.refresh)
