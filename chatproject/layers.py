"""channels-redis' ``RedisChannelLayer`` with fewer Redis round trips per message.

Every message Parley delivers crosses the layer twice: a ``group_send`` from the process that
stored it, a ``receive`` on each gateway hub that follows the conversation. channels-redis 4.3
spends four round trips on each side (issue 15's profile of the gateway: redis-py and
channels-redis were 17 % of its CPU at 1,500 deliveries/s, a quarter of a send's CPU was its
publish):

* ``group_send``: ZREMRANGEBYSCORE and ZRANGE on the group, a pipeline of ZREMRANGEBYSCORE on
  each channel, then an EVAL carrying its script's text;
* ``receive``: an EVAL (the backup queue's cleanup, its text again), BZPOPMIN, a ZADD to the
  backup queue, and after the message is handed on a ZPOPMIN of the backup queue;
* ``group_add``: a ZADD, then an EXPIRE, on a connection of its own.

Here the group's two commands go in one pipeline and the channels' expiry cleanup moves into
the send script, which runs by its SHA (``EVALSHA``; redis-py loads it on a ``NOSCRIPT``): two
round trips. A receive whose channel already holds messages takes them with one script that
does the cleanup, the pops and the backup in one step; on an empty channel the same script's
cleanup stands for channels-redis' own, then BZPOPMIN and the backup ZADD as it does them
(three round trips, as before). What is stored, where, with which scores, expiries and
capacities is exactly channels-redis' (its tests of the semantics, ours of delivery and
repair, run on this class).

A gateway hub is the one receiver of its process's channel, and under load the channel holds
many messages: a receive there takes up to ``receive_batch`` (100, at most the capacity) and
hands them to channels-redis' receive buffers in order, so the hub pays two round trips (the
take, then the backup's cleanup) per batch instead of per message. Two sequential round trips
per message had capped a gateway near 2,000 deliveries a second (20 groups of 10) with CPU to
spare; with batches it held about 2,950 and ran out of CPU first (issue 15, goal 1;
docs/benchmarks/runs/2026-12-07-receive-batch).

The ``group_add`` calls a shard gets while one of its pipelines is in flight (or in the same
turn of the event loop) go to it together in the next pipeline (messaging.inflight). A reconnect storm's thousand
sockets each add their device's and their user's group at once; each add on a connection of
its own grew a gateway's pool by hundreds of connections (opening them was 12 % of a gateway's
CPU in the storm).
"""
from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from typing import Any

import redis
from channels_redis import core

from messaging.inflight import InFlightBatches

# ARGV: the serialized messages, one per key; the capacities, one per key; then now, the
# channel expiry in seconds, and the score below which a message has expired.
_SEND = """
local over_capacity = 0
local n = #KEYS
local now, expiry, stale = ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, stale)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""

# KEYS: the channel, its backup queue; ARGV: the most messages to take. channels-redis'
# cleanup (what an interrupted receive left in the backup goes back in front, in order), then
# the oldest messages, if any, moved to the backup queue until the receiver has handed them
# on: returns them in order, or false.
_TAKE = """
local backed_up = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = #backed_up, 1, -2 do
    redis.call('ZADD', KEYS[1], backed_up[i], backed_up[i - 1])
end
redis.call('DEL', KEYS[2])
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
if popped[1] == nil then
    return false
end
local taken, scored = {}, {}
for i = 1, #popped, 2 do
    taken[#taken + 1] = popped[i]
    scored[#scored + 1] = popped[i + 1]
    scored[#scored + 1] = popped[i]
end
redis.call('ZADD', KEYS[2], unpack(scored))
return taken
"""


class RedisChannelLayer(core.RedisChannelLayer):
    def __init__(self, *args: Any, receive_batch: int = 100, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if receive_batch < 1:
            raise ValueError("receive_batch must be at least 1")
        # Never more than a channel's buffer holds: channels-redis' buffer drops its oldest
        # message when full, and the receiving channel's is empty whenever a receive goes to
        # Redis. (A process's other channels, if it has any, fill theirs as they would one
        # message at a time; a gateway has one.)
        self.receive_batch = min(receive_batch, self.capacity)
        self._scripts: dict[tuple[str, type], Any] = {}
        # The group_add batches, one per event loop and shard, each gone when it is idle.
        self._pending_adds: dict[tuple[asyncio.AbstractEventLoop, int], InFlightBatches[tuple[str, str]]] = {}
        self._blocking_clients: dict[tuple[int, float], redis.Redis] = {}

    def _script(self, connection: Any, source: str) -> Any:
        """The script as redis-py's EVALSHA caller (bound to a client per call, so one object
        serves every loop and connection of its kind: asyncio's or the blocking client's)."""
        place = (source, type(connection))
        script = self._scripts.get(place)
        if script is None:
            script = self._scripts[place] = connection.register_script(source)
        return script

    async def group_add(self, group: str, channel: str) -> None:
        """channels-redis' ZADD and EXPIRE, in the shard's next pipeline (see the module's doc)."""
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        place = (asyncio.get_running_loop(), self.consistent_hash(group))
        adds = self._pending_adds.get(place)
        if adds is None:
            adds = self._pending_adds[place] = InFlightBatches(
                functools.partial(self._store_adds, place[1]),
                on_idle=functools.partial(self._pending_adds.pop, place, None))
        await adds.submit((self._group_key(group), channel))

    async def _store_adds(self, index: int, entries: list[tuple[str, str]]) -> None:
        """One pipeline: each group's new channels, and the group's expiry renewed once."""
        channels_by_key: defaultdict[str, list[str]] = defaultdict(list)
        for key, channel in entries:
            channels_by_key[key].append(channel)
        now = time.time()
        async with self.connection(index).pipeline(transaction=False) as pipe:
            for key, channels in channels_by_key.items():
                pipe.zadd(key, dict.fromkeys(channels, now))
                pipe.expire(key, self.group_expiry)
            await pipe.execute()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            self._queue_group_read(pipe, key)
            _, members = await pipe.execute()
        for index, keys, args in self._sends(group, members, message):
            shard = self.connection(index)
            self._log_over_capacity(group, await self._script(shard, _SEND)(keys=keys, args=args, client=shard), members)

    def group_send_blocking(self, group: str, message: dict[str, Any], *, timeout: float) -> None:
        """:meth:`group_send` from a thread with no event loop of its own to use: the same two
        round trips, keys and script, on redis-py's blocking client. A sync send's publish had
        cost it a quarter of its CPU, most of that the hand-over to an event loop and back
        (docs/benchmarks/runs/2026-12-07-small-cuts). Connecting and each round trip wait at
        most a third of ``timeout`` (so the whole publish at most ``timeout``); a Redis that
        does not answer raises TimeoutError."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        try:
            pipe = self._blocking_client(self.consistent_hash(group), timeout).pipeline(transaction=False)
            self._queue_group_read(pipe, key)
            _, members = pipe.execute()
            for index, keys, args in self._sends(group, members, message):
                shard = self._blocking_client(index, timeout)
                self._log_over_capacity(group, self._script(shard, _SEND)(keys=keys, args=args, client=shard), members)
        except redis.TimeoutError as error:
            raise TimeoutError(str(error)) from error

    def _blocking_client(self, index: int, timeout: float) -> redis.Redis:
        """The shard's blocking client (one pool per process and shard: redis-py's pool opens
        new connections in a forked child)."""
        client = self._blocking_clients.get((index, timeout))
        if client is None:
            host = dict(self.hosts[index])
            address = host.pop("address")
            host.update(socket_timeout=timeout / 3, socket_connect_timeout=timeout / 3)
            client = self._blocking_clients[(index, timeout)] = redis.Redis.from_url(address, **host)
        return client

    @property
    def can_send_blocking(self) -> bool:
        """Every shard is a plain address (not Sentinel), so :meth:`group_send_blocking` can reach it."""
        return all("address" in host for host in self.hosts)

    def _queue_group_read(self, pipe: Any, key: str) -> None:
        """The group's expired members dropped, then its members read (channels-redis' two commands)."""
        pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        pipe.zrange(key, 0, -1)

    def _sends(self, group: str, members: list[bytes], message: dict[str, Any]) -> list[tuple[int, list[str], list[Any]]]:
        """Per shard, the channel keys and the send script's arguments (see ``_SEND``)."""
        channel_names = [member.decode("utf8") for member in members]
        if not channel_names:
            return []
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        sends = []
        for index, keys in by_connection.items():
            now = time.time()
            sends.append((index, keys, [messages[k] for k in keys] + [capacities[k] for k in keys]
                          + [now, self.expiry, int(now) - int(self.expiry)]))
        return sends

    @staticmethod
    def _log_over_capacity(group: str, over_capacity: int, members: list[bytes]) -> None:
        if over_capacity > 0:
            core.logger.info("%s of %s channels over capacity in group %s", over_capacity, len(members), group)

    async def ping(self) -> None:
        """Every Redis server of the layer answers (``/readyz``): readiness asks the servers, not
        a message through the process's own channel, which waits behind whatever the hub has
        not received yet."""
        for index in range(self.ring_size):
            await self.connection(index).ping()

    async def waiting_since(self, channel: str) -> float | None:
        """When the oldest message still waiting on ``channel`` was sent (time.time() of the
        sender), or None when nothing waits. A process-specific channel's messages all wait
        under its process's key, scored by their send time (channels-redis' layout); one
        round trip, read-only."""
        name = self.non_local_name(channel)
        oldest = await self.connection(self.consistent_hash(name)).zrange(self.prefix + name, 0, 0,
                                                                         withscores=True)
        return float(oldest[0][1]) if oldest else None

    async def _take(self, index: int, channel: str, limit: int, timeout: Any) -> list[bytes] | None:
        """Up to ``limit`` waiting messages in one round trip; on an empty channel the first to
        arrive within ``timeout``, as channels-redis waits for it (BZPOPMIN, then the backup
        ZADD); None if none came."""
        connection = self.connection(index)
        backup = self._backup_channel_name(channel)
        taken = await self._script(connection, _TAKE)(keys=[channel, backup], args=[limit], client=connection)
        if taken:
            return list(taken)
        result = await connection.bzpopmin(channel, timeout=timeout)
        if result is None:
            return None
        _, member, score = result
        await connection.zadd(backup, {member: float(score)})
        return [member]

    async def _brpop_with_clean(self, index: int, channel: str, timeout: Any) -> Any:
        """channels-redis' receive step, by :meth:`_take` (one round trip when messages are
        waiting; the script's cleanup stands for channels-redis' own).

        On a process's channel (``…!``) it takes up to ``receive_batch``. channels-redis'
        ``receive_single`` returns the content this returns, and ``receive`` puts it into its
        channel's buffer, with no await between; so every message of the batch but the last
        goes into its channel's buffer here, in order, and the last follows them. The whole
        batch stays in the backup queue until the cleaner (under the channel's receive lock)
        clears it: a receive cancelled before then leaves it for the next to put back in front.
        Other channels take one message, as channels-redis does."""
        process_channel = channel.endswith("!")
        taken = await self._take(index, channel, self.receive_batch if process_channel else 1, timeout)
        if not taken:
            return None
        for content in taken[:-1]:
            message = self.deserialize(content)
            to = message.pop("__asgi_channel__", channel[len(self.prefix):])  # channels-redis' unpacking
            for each in to if isinstance(to, list) else [to]:
                self.receive_buffer[each].put_nowait(message)
        return taken[-1]

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        """The taken message or batch has been handed on: its backup copies go (one ``DEL``;
        only this receiver, under the channel's receive lock, touches the backup queue, and
        :meth:`_take` left nothing else in it)."""
        await self.connection(index).delete(self._backup_channel_name(channel))
