"""One socket's session: who it is, which groups it follows, and what it does with each frame
and each event (docs/architecture.md, "Live path" and "Replay path").

The consumer (gateway.consumer) parses frames and hands them here; the hub and the runtime
hand live events and notices here. Live events enter a queue drained by one task, so a
socket handles them one at a time, in arrival order; everything that writes messages goes
through the socket's :class:`~gateway.writer.StreamWriter` under its lock, so the stream
state has one writer at a time.

``hello``: follow each conversation from its resume points (receipts.resume), send the first
replay page of each one behind, then the first page of changes of each one whose change
stream is behind (within the process's admission budget, ops.admission), the removals since
the device's last hello, then ``ready``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, cast

from django.conf import settings

from messaging import ratelimit
from messaging.errors import ParleyError
from messaging.events import (
    CLOSE_RESTARTING,
    MessageEvent,
    RemovedFrame,
    conversation_frame,
    degraded_frame,
    presence_frame,
    ready_frame,
    reconnect_frame,
    removed_frame,
    typing_frame,
)
from messaging.fanout import is_large
from messaging.layer import conversation_group, device_group, user_group
from messaging.models import Device, User
from messaging.payloads import ConversationPayload
from messaging.replay import removals_to_replay
from ops import degraded
from receipts.resume import ConversationResume, resume_points

from .frames import Transport, encode, frame_text
from .notices import Degraded, Notice, ReceiptBatch, ReceiptText, Resync
from .protocol import FrameError
from .writer import StreamWriter

if TYPE_CHECKING:
    from .runtime import GatewayRuntime

logger = logging.getLogger(__name__)


class Connection:
    def __init__(self, runtime: GatewayRuntime, *, user: User, device: Device, transport: Transport) -> None:
        self.runtime = runtime
        self.user = user
        self.device = device
        self.device_key = str(device.pk)  # as ack flushes name devices (gateway.receipts)
        self.transport = transport
        self.telemetry = runtime.telemetry()
        self.writer = StreamWriter(runtime, user=user, transport=transport, telemetry=self.telemetry)
        self.groups: set[str] = set()
        self.events: asyncio.Queue[Mapping[str, Any] | Notice] = asyncio.Queue()
        self.typing_sent_at: dict[int, float] = {}
        self.helloed = False
        self.batch_receipts = False  # the client's hello asked for ``receipts`` frames (docs/api.md)
        self.closing = False
        self._closed = False
        self._pump: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        self._pump = asyncio.get_running_loop().create_task(self._drain_events())
        await asyncio.gather(self._join(user_group(self.user.pk)), self._join(device_group(self.device.pk)))

    async def close(self, code: int) -> None:
        """The socket ended (any way): leave the hub, store the acks, count the user offline."""
        if self._closed:
            return
        self._closed = self.closing = True
        self.runtime.closed(self, code=code)
        for group in list(self.groups):
            await self.runtime.hub.unsubscribe(group, self)
        if self._pump is not None:
            self._pump.cancel()
        await self.runtime.acks.flush()  # a clean disconnect leaves its cursors stored
        if self.helloed:
            await self.runtime.presence.went_offline(self.user.pk)

    async def restart(self, *, after_ms: int) -> None:
        """This gateway is shutting down: tell the client when to come back, close, clean up."""
        if self.closing:
            return
        self.closing = True
        await self.send(reconnect_frame(after_ms))
        await self.transport.close_socket(CLOSE_RESTARTING)
        await self.close(CLOSE_RESTARTING)

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.transport.send_text(encode(frame))

    async def _join(self, group: str) -> None:
        self.groups.add(group)
        await self.runtime.hub.subscribe(group, self)

    async def _leave(self, group: str) -> None:
        self.groups.discard(group)
        await self.runtime.hub.unsubscribe(group, self)

    # --- frames from the client (parsed by the consumer) -----------------------------------
    def require_follow(self, conversation_id: int) -> None:
        if not self.helloed:
            raise FrameError("invalid", "send hello first")
        if not self.writer.follows(conversation_id):
            raise FrameError("not_found", "conversation not found")

    async def hello(self, cursors: dict[int, int], change_cursors: dict[int, int] | None = None, *,
                    batch_receipts: bool = False) -> None:
        if self.helloed:
            raise FrameError("invalid", "hello was already received on this connection")
        self.batch_receipts = batch_receipts
        db, hub, writer = self.runtime.db, self.runtime.hub, self.writer
        points, removals = await db(_where_to_resume)(user=self.user, device=self.device, cursors=cursors,
                                                      change_cursors=change_cursors)
        async with writer.lock:
            self.helloed = True
            for point in points:
                writer.follow(point.conversation_id, held=point.resume_after,
                              behind=point.resume_after < point.last_seq, large=is_large(point.member_count),
                              changes_held=point.change_after, changes_behind=point.change_after < point.last_change)
                hub.note_heads(point.conversation_id, point.last_seq, point.last_change)
                await self._join(conversation_group(point.conversation_id))
            # The pages' reads run within the process's replay budget, small gaps first, and a
            # storm's members of one conversation share one read (gateway.fills); live events
            # queue behind the writer's lock meanwhile.
            for point in points:
                if point.resume_after < point.last_seq:
                    await writer.page(point.conversation_id, point.resume_after, resuming=True)
            for point in points:
                if point.change_after < point.last_change:
                    await writer.changes.page(point.conversation_id, point.change_after, resuming=True)
            for removal in removals:
                await self.send(removal)
            await self.send(ready_frame({p.conversation_id: p.last_seq for p in points},
                                        {p.conversation_id: p.last_change for p in points}))
            if degraded.current().shed:
                await self.send(degraded_frame(list(degraded.current().shed)))
        self.telemetry.helloed(resumed=bool(cursors) or any(p.from_cursor for p in points))
        await self.runtime.presence.came_online(self.user.pk)

    async def replay(self, conversation_id: int, after_seq: int, limit: int) -> None:
        self.require_follow(conversation_id)
        behind = self.runtime.hub.messages_behind(conversation_id, after_seq)
        async with self.runtime.admission.slot(behind=behind), self.writer.lock:
            await self.writer.page(conversation_id, after_seq, limit)

    async def replay_changes(self, conversation_id: int, after: int, limit: int) -> None:
        self.require_follow(conversation_id)
        behind = self.runtime.hub.changes_behind(conversation_id, after)
        async with self.runtime.admission.slot(behind=behind), self.writer.lock:
            await self.writer.changes.page(conversation_id, after, limit)

    def ack(self, conversation_id: int, seq: int) -> None:
        self.require_follow(conversation_id)
        self.telemetry.acked(conversation_id, seq)
        self.runtime.acks.add(user_id=self.user.pk, device_id=self.device.pk, conversation_id=conversation_id,
                              seq=seq)

    async def typing(self, conversation_id: int) -> None:
        self.require_follow(conversation_id)
        if conversation_id in self.writer.large:
            return  # large channels carry no typing: it would multiply by thousands
        if degraded.sheds(degraded.TYPING):
            return
        # This connection's throttle first: most keystrokes stop here, without a cache round trip.
        now = time.monotonic()
        if now - self.typing_sent_at.get(conversation_id, 0.0) < settings.PARLEY_TYPING_THROTTLE_MS / 1000:
            return
        self.typing_sent_at[conversation_id] = now
        self.runtime.counts.typing()
        try:  # then the user's, across devices
            await self.runtime.db(ratelimit.enforce)(ratelimit.TYPING, f"{conversation_id}:{self.user.pk}",
                                                     user=self.user)
        except ParleyError:
            return  # over the rate, or no cache: typing is lossy, dropping it costs nothing
        await self.runtime.presence.typing(conversation_id=conversation_id, user_id=self.user.pk)

    # --- events, from the hub and the runtime --------------------------------------------------
    def deliver(self, event: Mapping[str, Any] | Notice) -> None:
        if self.closing:
            return
        if isinstance(event, Degraded):
            # Not behind the queue: under a flood the queue is the flood, and the client should
            # hear that extras are shed now, not after the backlog (the frame carries no seq).
            asyncio.get_running_loop().create_task(self._tell_degraded(event.shed))
            return
        self.events.put_nowait(event)

    async def _drain_events(self) -> None:
        while True:
            batch = [await self.events.get()]
            while not self.events.empty():  # what queued meanwhile goes out together
                batch.append(self.events.get_nowait())
            self.runtime.counts.handled(len(batch))
            for item in coalesce(batch):
                try:
                    if isinstance(item, MessageRun):
                        for event in item.events:
                            self.runtime.hub.note_event_handled(event)
                        if self.helloed:
                            async with self.writer.lock:
                                await self.writer.live_run(item.conversation_id, item.events)
                        continue
                    self.runtime.hub.note_event_handled(item)  # how long it queued (degraded mode's gateway lag)
                    await self._handle(item)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - one bad event must not stop the stream; replay repairs
                    logger.exception("gateway failed to handle %s", item)

    async def _handle(self, event: Mapping[str, Any] | Notice) -> None:
        if isinstance(event, ReceiptBatch):
            if self.writer.follows(event.conversation_id):
                for text in event.frames(batched=self.batch_receipts):
                    await self.transport.send_text(text)
        elif isinstance(event, ReceiptText):
            await self._on_receipt(event)
        elif isinstance(event, Resync):
            if self.helloed:
                await self.writer.resync()
        elif isinstance(event, Degraded):
            await self._tell_degraded(event.shed)
        else:
            await self._on_layer_event(event)

    async def _on_layer_event(self, event: Mapping[str, Any]) -> None:
        kind = event["type"]
        if kind in ("conv.message", "conv.tail", "conv.messages", "conv.change"):
            if self.helloed:
                async with self.writer.lock:
                    if kind == "conv.messages":
                        await self.writer.batch(event)  # type: ignore[arg-type]
                    elif kind == "conv.change":
                        await self.writer.changes.live(event["conversation"], event["change"], event)  # type: ignore[arg-type]
                    else:
                        await self.writer.live(event["conversation"], event["seq"],
                                               event if kind == "conv.message" else None)  # type: ignore[arg-type]
                        if kind == "conv.tail":
                            await self.writer.changes.live(event["conversation"], event["change"], None)
        elif kind == "conv.removed":
            if self.writer.follows(event["conversation"]):
                await self.transport.send_text(frame_text(event, removed_frame(event["conversation"], event["id"],
                                                                               event["seq"])))
        elif kind == "conv.typing":
            if (event["user"] != self.user.pk and self.writer.follows(event["conversation"])
                    and not degraded.sheds(degraded.TYPING)):
                self.runtime.counts.typing()
                await self.transport.send_text(frame_text(event, typing_frame(event)))  # type: ignore[arg-type]
        elif kind == "conv.presence":
            if event["user"] != self.user.pk and not degraded.sheds(degraded.PRESENCE):
                await self.transport.send_text(frame_text(event, presence_frame(event)))  # type: ignore[arg-type]
        elif kind == "user.joined":
            await self._on_joined(event["conversation"])
        elif kind == "user.left":
            await self._on_left(event["conversation"])
        elif kind == "user.updated":
            if self.helloed:
                await self.send(conversation_frame("updated", event["conversation"]))
        elif kind == "socket.close":
            self.closing = True
            await self.transport.close_socket(event["code"])

    async def _on_receipt(self, receipt: ReceiptText) -> None:
        """A receipt frame coalesced and serialized by the process (gateway.receipts)."""
        if not self.writer.follows(receipt.conversation_id):
            return
        if receipt.own_user is not None and (receipt.own_user != self.user.pk
                                             or self.device_key in receipt.except_devices):
            return
        await self.transport.send_text(receipt.text)

    async def _on_joined(self, conversation: ConversationPayload) -> None:
        conversation_id = conversation["id"]
        if not self.helloed or self.writer.follows(conversation_id):
            return
        async with self.writer.lock:
            self.writer.follow(conversation_id, held=conversation["last_seq"],
                               large=is_large(conversation["member_count"]),
                               changes_held=conversation["last_change"])
            await self._join(conversation_group(conversation_id))
            await self.send(conversation_frame("joined", conversation))

    async def _on_left(self, conversation: ConversationPayload) -> None:
        conversation_id = conversation["id"]
        async with self.writer.lock:
            self.writer.unfollow(conversation_id)
            await self._leave(conversation_group(conversation_id))
        if self.helloed:
            await self.send(conversation_frame("left", conversation))

    async def _tell_degraded(self, shed: tuple[str, ...]) -> None:
        if not self.helloed or self.closing:
            return  # hello will say so; a closing socket needs no news
        try:
            await self.send(degraded_frame(list(shed)))
        except Exception:  # noqa: BLE001 - a task of its own: the socket went away meanwhile
            logger.debug("degraded frame not sent", exc_info=True)


def _where_to_resume(*, user: User, device: Device, cursors: dict[int, int], change_cursors: dict[int, int] | None
                     ) -> tuple[list[ConversationResume], list[RemovedFrame]]:
    """A hello's two reads in one trip to a database thread (a reconnect storm makes thousands)."""
    return (resume_points(user=user, device_id=device.pk, cursors=cursors, change_cursors=change_cursors),
            removals_to_replay(device=device))


@dataclass
class MessageRun:
    """Live messages of one conversation queued for one socket, consecutive seqs."""

    conversation_id: int
    events: list[MessageEvent]


def coalesce(batch: list[Mapping[str, Any] | Notice]) -> list[Mapping[str, Any] | Notice | MessageRun]:
    """A socket's queued events, in order, with the live messages of each conversation that
    follow one another in seq gathered into runs (each sent as one frame: gateway.writer).

    Only messages are moved, and only past messages of other conversations (there is no order
    across conversations, CONTRACT "Semantics" 3); any other event (a change, a removal, a
    receipt, a membership change) is a barrier that nothing crosses.
    """
    out: list[Mapping[str, Any] | Notice | MessageRun] = []
    runs: dict[int, MessageRun] = {}
    for event in batch:
        if isinstance(event, Notice) or event.get("type") != "conv.message":
            runs.clear()
            out.append(event)
            continue
        message = cast(MessageEvent, event)
        conversation_id = message["conversation"]
        run = runs.get(conversation_id)
        if run is not None and message["seq"] == run.events[-1]["seq"] + 1:
            run.events.append(message)
            continue
        runs[conversation_id] = run = MessageRun(conversation_id, [message])
        out.append(run)
    return [item.events[0] if isinstance(item, MessageRun) and len(item.events) == 1 else item for item in out]
