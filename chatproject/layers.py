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
round trips. A receive whose channel already holds a message (the hub under load) takes it
with one script that does the cleanup, the pop and the backup in one step; on an empty
channel the same script's cleanup stands for channels-redis' own, then BZPOPMIN and the
backup ZADD as it does them (three round trips, as before). What is stored, where, with
which scores, expiries and capacities is exactly channels-redis' (its tests of the semantics,
ours of delivery and repair, run on this class).

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

# KEYS: the channel, its backup queue. channels-redis' cleanup (what an interrupted receive
# left in the backup goes back in front, in order), then the oldest message, if any, moved to
# the backup queue until the receiver has handed it on: returns it, or false.
_TAKE = """
local backed_up = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = #backed_up, 1, -2 do
    redis.call('ZADD', KEYS[1], backed_up[i], backed_up[i - 1])
end
redis.call('DEL', KEYS[2])
local popped = redis.call('ZPOPMIN', KEYS[1])
if popped[1] == nil then
    return false
end
redis.call('ZADD', KEYS[2], popped[2], popped[1])
return popped[1]
"""


class RedisChannelLayer(core.RedisChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scripts: dict[str, Any] = {}
        # The group_add batches, one per event loop and shard, each gone when it is idle.
        self._pending_adds: dict[tuple[asyncio.AbstractEventLoop, int], InFlightBatches[tuple[str, str]]] = {}

    def _script(self, connection: Any, source: str) -> Any:
        """The script as redis-py's EVALSHA caller (bound to a client per call, so one object
        serves every loop and connection)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = connection.register_script(source)
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
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        channel_names = [member.decode("utf8") for member in members]
        if not channel_names:
            return
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in by_connection.items():
            now = time.time()
            args = ([messages[k] for k in keys] + [capacities[k] for k in keys]
                    + [now, self.expiry, int(now) - int(self.expiry)])
            shard = self.connection(index)
            over_capacity = await self._script(shard, _SEND)(keys=keys, args=args, client=shard)
            if over_capacity > 0:
                core.logger.info("%s of %s channels over capacity in group %s", over_capacity,
                                 len(channel_names), group)

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

    async def _brpop_with_clean(self, index: int, channel: str, timeout: Any) -> Any:
        """channels-redis' receive step: what an interrupted receive left in the backup queue
        goes back first, then the oldest message moves to the backup queue until it has been
        handed on. One round trip when a message is waiting; otherwise the wait, as
        channels-redis does it, minus its cleanup (the script just did that, and only this
        receiver, under channels-redis' per-channel lock, touches the backup queue)."""
        connection = self.connection(index)
        backup = self._backup_channel_name(channel)
        taken = await self._script(connection, _TAKE)(keys=[channel, backup], client=connection)
        if taken:
            return taken
        result = await connection.bzpopmin(channel, timeout=timeout)
        if result is None:
            return None
        _, member, score = result
        await connection.zadd(backup, {member: float(score)})
        return member

