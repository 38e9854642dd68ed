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
* a tail check compares, every few seconds, the stored ``last_seq`` and ``last_change`` of
  the followed conversations with the highest the layer announced; a conversation that
  stays behind across two checks gets a synthetic doorbell, and the sockets fill both
  streams from the store. That repairs the last message or change of a burst whose event
  was lost (nothing after it would reveal the gap).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from typing import Any, Callable

from channels.layers import get_channel_layer
from django.conf import settings

from messaging import presence
from messaging.events import ReceiptsEvent, tail_event
from messaging.layer import GATEWAY_CHANNEL_PREFIX, conversation_group, group_id
from messaging.replay import conversation_heads

from .db import DatabaseThreads
from .notices import Resync, Subscriber

logger = logging.getLogger(__name__)


class GatewayHub:
    def __init__(self, *, db: DatabaseThreads, on_receipts: Callable[[ReceiptsEvent], None]) -> None:
        self.db = db
        self.on_receipts = on_receipts  # conv.receipts events are coalesced once per process
        self.routes: dict[str, set[Subscriber]] = defaultdict(set)
        self.channel: str | None = None
        # Highest seq and change number announced per conversation (by events or a tail check).
        self.announced: dict[int, int] = {}
        self.announced_changes: dict[int, int] = {}
        self._suspect: dict[int, tuple[int, int]] = {}
        self._shard_run_ids: dict[int, str] = {}  # channel-layer server index -> Redis run id
        self._event_lag = 0.0  # the oldest event's age since take_event_lag (degraded mode)
        self._tasks: list[asyncio.Task] = []

    @property
    def layer(self) -> Any:
        return get_channel_layer()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.channel = await self.layer.new_channel(GATEWAY_CHANNEL_PREFIX)
        self._tasks = [
            loop.create_task(self._receive_loop(), name="parley-hub-receive"),
            loop.create_task(self._maintenance_loop(), name="parley-hub-maintenance"),
        ]

    async def stop(self) -> None:
        """Stop the hub's tasks (channels-redis refuses a second loop's receive on a channel
        while the first one's is pending)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.routes.clear()

    # --- registration ----------------------------------------------------------------------
    async def subscribe(self, group: str, subscriber: Subscriber) -> None:
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

    def sockets_of(self, group: str) -> set[Subscriber]:
        return self.routes.get(group, set())

    def note_seq(self, conversation_id: int, seq: int) -> None:
        if seq > self.announced.get(conversation_id, 0):
            self.announced[conversation_id] = seq

    def note_change(self, conversation_id: int, change: int) -> None:
        if change > self.announced_changes.get(conversation_id, 0):
            self.announced_changes[conversation_id] = change

    def note_heads(self, conversation_id: int, seq: int, change: int) -> None:
        self.note_seq(conversation_id, seq)
        self.note_change(conversation_id, change)

    def messages_behind(self, conversation_id: int, after_seq: int) -> int:
        """How many messages a reader holding ``after_seq`` misses, as far as this process knows
        (at least 1: a replay's weight in the admission budget, ops.admission)."""
        return max(self.announced.get(conversation_id, 0) - after_seq, 1)

    def changes_behind(self, conversation_id: int, after: int) -> int:
        """The same for the change stream."""
        return max(self.announced_changes.get(conversation_id, 0) - after, 1)

    def _behind(self, conversation_id: int, heads: tuple[int, int]) -> bool:
        return (heads[0] > self.announced.get(conversation_id, 0)
                or heads[1] > self.announced_changes.get(conversation_id, 0))

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
            subscriber.deliver(Resync())

    def note_event_handled(self, event: Any) -> None:
        """A socket of this process is handling ``event`` now (after its own queue)."""
        published_at = event.get("published_at") if isinstance(event, dict) else None
        if published_at is not None:
            self._event_lag = max(self._event_lag, time.time() - published_at)

    async def layer_backlog(self, *, timeout: float) -> float:
        """How long the oldest event still waiting for this process in the layer has waited,
        in seconds (0 when none waits, the layer cannot tell, or Redis failed to answer: the
        receive loop reports and repairs outages).

        The handled-event lag counts an event only once the receive loop has taken it, so
        while a flood outruns the receive loop the backlog piles up in Redis unseen: under a
        typing flood, message events waited 3-7 s there before any tick saw them (issue 15,
        goal 5). Asked at each tick, this sees the backlog as it forms. An answer that takes
        longer than ``timeout`` counts as that much lag: the layer is at least that slow."""
        waiting_since = getattr(self.layer, "waiting_since", None)  # chatproject.layers, not in-memory
        if waiting_since is None or self.channel is None:
            return 0.0
        try:
            sent_at = await asyncio.wait_for(waiting_since(self.channel), timeout)
        except asyncio.TimeoutError:
            return timeout
        except Exception:  # noqa: BLE001 - Redis gone: the receive loop backs off and repairs
            return 0.0
        return max(time.time() - sent_at, 0.0) if sent_at is not None else 0.0

    def take_event_lag(self) -> float:
        """The age of the oldest event a socket handled since the last call, publish to
        handling (0 if none carried its publish time); other hosts' clocks are taken as in sync."""
        lag, self._event_lag = self._event_lag, 0.0
        return lag

    def dispatch(self, event: dict[str, Any]) -> None:
        conversation_id = event.get("conversation")
        kind = event.get("type")
        if kind == "conv.message" and isinstance(conversation_id, int):
            self.note_seq(conversation_id, event["seq"])
        elif kind == "conv.messages" and isinstance(conversation_id, int):
            self.note_seq(conversation_id, event["last_seq"])
        elif kind == "conv.change" and isinstance(conversation_id, int):
            self.note_change(conversation_id, event["change"])
        elif kind == "conv.receipts":
            if event.get("group", "") in self.routes:
                self.on_receipts(event)  # type: ignore[arg-type]
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
                    users = [group_id(g) for g in self.routes if g.startswith("user.")]
                    await self.db(presence.refresh)(users)
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
        followed = [group_id(g) for g in self.routes if g.startswith("conv.")]
        if not followed:
            return
        stored = await self.db(conversation_heads)(followed)
        for conversation_id, heads in stored.items():
            if not self._behind(conversation_id, heads):
                self._suspect.pop(conversation_id, None)
                continue
            # Behind at two checks in a row: the doorbell was lost, not merely in flight.
            suspect = self._suspect.pop(conversation_id, None)
            if suspect is not None and self._behind(conversation_id, suspect):
                self.note_heads(conversation_id, *heads)
                self.dispatch({**tail_event(conversation_id, *heads), "group": conversation_group(conversation_id)})
            else:
                self._suspect[conversation_id] = (heads.last_seq, heads.last_change)
