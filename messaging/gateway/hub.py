"""The gateway hub: one channel-layer subscription per gateway process, local dispatch to sockets.

docs/architecture.md, "Live path" and "Group shape". Each daphne process owns one layer
channel. A group (``conv.<id>``, ``user.<id>``, ``device.<id>``) holds the channel of every
process that has a socket interested in it, so a publish costs one layer message per
process, not per socket, and a socket joining a conversation already followed by its
process costs no Redis work at all. Sockets register with the hub; the hub forwards each
event to the sockets registered under the event's group.

Repair, because the layer is a doorbell (CONTRACT "Semantics" 4):

* a receive error (Redis restarted or unreachable) makes the hub back off with jitter,
  re-add every group once the layer answers (a restarted Redis forgot them), and tell
  every socket to resync its conversations from PostgreSQL;
* with the layer spread over several Redis servers, a restart of one that does not hold the
  hub's channel raises nothing here; the maintenance loop notices it by the server's new run
  id and repairs it the same way;
* groups are re-added periodically, so channels-redis group expiry never drops one;
* a tail check compares, every few seconds, the stored ``last_seq`` of the followed
  conversations with the highest seq the layer announced; a conversation that stays
  behind across two checks gets a synthetic doorbell, and the sockets fill from the store.
  That repairs the last message of a burst whose event was lost (nothing after it would
  reveal the gap).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from messaging.models import Conversation

from . import presence
from .db import db
from .receipts import ReceiptCoalescer

logger = logging.getLogger(__name__)

# The prefix of the process's layer channel. channels-redis reads a process's channels of one
# prefix through one Redis list and one reader at a time; anything else in this process that
# needs a reply channel (the /readyz probe) must share it, or it waits behind the hub forever.
CHANNEL_PREFIX = "gateway."


class Subscriber(Protocol):
    def deliver(self, event: dict[str, Any]) -> None: ...

    def resync(self) -> None: ...


class GatewayHub:
    def __init__(self) -> None:
        self.routes: dict[str, set[Subscriber]] = defaultdict(set)
        # Receipt events are coalesced here, once per process, then handed to the sockets.
        self.receipts = ReceiptCoalescer(lambda group: self.routes.get(group, ()))
        self.channel: str | None = None
        # Highest seq announced per conversation (by events or by a tail check).
        self.announced: dict[int, int] = {}
        self._suspect: dict[int, int] = {}
        self._shard_run_ids: dict[int, str] = {}  # channel-layer server index -> Redis run id
        self._event_lag = 0.0  # the oldest event's age since take_event_lag (degraded mode)
        self._tasks: list[asyncio.Task] = []
        self._start_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def layer(self):
        return get_channel_layer()

    async def ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self.channel is not None and self._loop is loop:
            return
        async with self._start_lock:
            if self.channel is not None and self._loop is loop:
                return
            if self._loop is not None:
                # A new event loop (tests run one per test): the old loop's tasks and routes are gone.
                self.routes.clear()
                self.announced.clear()
                self._suspect.clear()
            self._loop = loop
            self.channel = await self.layer.new_channel(CHANNEL_PREFIX)
            self._tasks = [
                loop.create_task(self._receive_loop(), name="parley-hub-receive"),
                loop.create_task(self._maintenance_loop(), name="parley-hub-maintenance"),
            ]

    async def stop(self) -> None:
        """Stop the hub's tasks in the loop that runs them (tests start one loop per test;
        channels-redis refuses a second loop's receive while the first one's is pending)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.channel = None
        self._loop = None
        self.routes.clear()
        self.announced.clear()
        self._suspect.clear()

    # --- registration ----------------------------------------------------------------------
    async def subscribe(self, group: str, subscriber: Subscriber) -> None:
        await self.ensure_started()
        members = self.routes[group]
        first = not members
        members.add(subscriber)
        if first:
            await self._group_add(group)

    async def unsubscribe(self, group: str, subscriber: Subscriber) -> None:
        members = self.routes.get(group)
        if not members:
            return
        members.discard(subscriber)
        if not members:
            del self.routes[group]
            try:
                await self.layer.group_discard(group, self.channel)
            except Exception:  # noqa: BLE001 - expiry cleans it up; a stray event is dropped locally
                logger.info("group_discard %s failed", group, exc_info=True)

    def note_seq(self, conversation_id: int, seq: int) -> None:
        if seq > self.announced.get(conversation_id, 0):
            self.announced[conversation_id] = seq

    async def _group_add(self, group: str) -> None:
        try:
            await self.layer.group_add(group, self.channel)
        except Exception:  # noqa: BLE001 - the receive loop's recovery re-adds every group
            logger.warning("group_add %s failed; will re-add on recovery", group, exc_info=True)

    # --- the receive loop ------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        backoff = 0.05
        broken = False
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis gone: back off, then repair
                if not broken:
                    logger.warning("channel layer receive failed; backing off", exc_info=True)
                broken = True
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 2.0)
                if await self._layer_answers():
                    await self._recover()
                    broken, backoff = False, 0.05
                continue
            self.dispatch(event)

    async def _layer_answers(self) -> bool:
        try:
            await self.layer.group_add("parley.health", self.channel)
            await self.layer.group_discard("parley.health", self.channel)
            return True
        except Exception:  # noqa: BLE001
            return False

    async def _recover(self) -> None:
        logger.warning("channel layer back; re-adding %d groups and resyncing sockets", len(self.routes))
        for group in list(self.routes):
            await self._group_add(group)
        for subscriber in {s for members in self.routes.values() for s in members}:
            subscriber.resync()

    def note_event_handled(self, event: dict[str, Any]) -> None:
        """A socket of this process is handling ``event`` now (after its own queue)."""
        published_at = event.get("published_at")
        if published_at is not None:
            self._event_lag = max(self._event_lag, time.time() - published_at)

    def take_event_lag(self) -> float:
        """The age of the oldest event a socket handled since the last call, publish to
        handling (0 if none carried its publish time); other hosts' clocks are taken as in sync."""
        lag, self._event_lag = self._event_lag, 0.0
        return lag

    def dispatch(self, event: dict[str, Any]) -> None:
        conversation_id = event.get("conversation")
        if event.get("type") == "conv.message" and isinstance(conversation_id, int):
            self.note_seq(conversation_id, event["seq"])
        elif event.get("type") == "conv.messages" and isinstance(conversation_id, int):
            self.note_seq(conversation_id, event["last_seq"])
        elif event.get("type") == "conv.receipts":
            if event.get("group", "") in self.routes:
                self.receipts.add(event)
            return
        for subscriber in list(self.routes.get(event.get("group", ""), ())):
            subscriber.deliver(event)

    # --- maintenance -----------------------------------------------------------------------
    async def _maintenance_loop(self) -> None:
        interval = settings.PARLEY_GATEWAY_TAIL_CHECK_SECONDS
        refresh_every = max(1, int(settings.PARLEY_GATEWAY_GROUP_REFRESH_SECONDS / interval))
        presence_every = max(1, int(settings.PARLEY_PRESENCE_REFRESH_SECONDS / interval))
        rounds = 0
        while True:
            await asyncio.sleep(interval)
            rounds += 1
            try:
                if await self._a_shard_restarted():
                    await self._recover()
                await self._tail_check()
                if rounds % presence_every == 0:
                    users = [int(g.split(".", 1)[1]) for g in self.routes if g.startswith("user.")]
                    await db(presence.refresh)(users)
                if rounds % refresh_every == 0:
                    for group in list(self.routes):
                        await self._group_add(group)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - maintenance must outlive a bad round
                logger.warning("gateway maintenance round failed", exc_info=True)

    async def _a_shard_restarted(self) -> bool:
        """Did a channel-layer Redis server restart since the last look (a new run id)?

        A restarted server forgot the groups it held, but the hub notices a failure only on
        its own channel's server: with the layer spread over several servers, a restart of
        another one would silence the conversations, users and devices whose groups hashed
        there (the tail check would repair conversations, slowly; nothing would repair the
        rest) until the periodic group refresh.
        """
        ring_size = getattr(self.layer, "ring_size", 0)
        restarted = False
        for index in range(ring_size):
            try:
                run_id = (await self.layer.connection(index).info("server")).get("run_id")
            except Exception:  # noqa: BLE001 - down now: compare again when it answers
                continue
            if self._shard_run_ids.get(index) not in (None, run_id):
                logger.warning("channel-layer server %d restarted; re-adding groups and resyncing", index)
                restarted = True
            self._shard_run_ids[index] = run_id
        return restarted

    async def _tail_check(self) -> None:
        followed = [int(g.split(".", 1)[1]) for g in self.routes if g.startswith("conv.")]
        if not followed:
            return
        stored = await db(_last_seqs)(followed)
        for conversation_id, last_seq in stored.items():
            if last_seq <= self.announced.get(conversation_id, 0):
                self._suspect.pop(conversation_id, None)
                continue
            # Behind at two checks in a row: the doorbell was lost, not merely in flight.
            suspect = self._suspect.pop(conversation_id, 0)
            if suspect and self.announced.get(conversation_id, 0) < suspect:
                self.note_seq(conversation_id, last_seq)
                self.dispatch({"type": "conv.tail", "group": f"conv.{conversation_id}",
                               "conversation": conversation_id, "seq": last_seq})
            else:
                self._suspect[conversation_id] = last_seq


def _last_seqs(conversation_ids: list[int]) -> dict[int, int]:
    result: dict[int, int] = {}
    for start in range(0, len(conversation_ids), 1000):
        chunk = conversation_ids[start:start + 1000]
        result.update(Conversation.objects.filter(pk__in=chunk).values_list("pk", "last_seq"))
    return result


hub = GatewayHub()
