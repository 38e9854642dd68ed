"""One socket's stream: what it follows, what the client holds, and the order frames go out in.

docs/architecture.md, "Live path" and "Replay path". The consumer (gateway.consumer) parses
frames and hands them here; the hub hands live events here. A :class:`Connection` keeps the
per-conversation stream state (gateway.stream, a pure state machine) and turns every
decision into frames:

* ``hello``: follow each conversation from its resume point (receipts.resume), send the first
  replay page of each one behind (shared by the sockets of the process, gateway.fills),
  removals since the last hello, then ``ready``;
* live events enter a queue drained by one pump task; hello, replay pages, live sends and
  gap fills all take the stream lock, so the stream state has one writer at a time;
* a live event beyond what the client holds is filled from PostgreSQL first; while the
  client pages through replay, live frames of that conversation wait, and whatever was
  announced meanwhile is filled when the last page goes out.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from django.conf import settings

from messaging import ratelimit
from messaging.errors import ParleyError
from messaging.events import (
    CLOSE_RESTARTING,
    BatchEvent,
    MessageEvent,
    conversation_frame,
    degraded_frame,
    message_frame,
    messages_frame,
    presence_frame,
    ready_frame,
    reconnect_frame,
    removed_frame,
    typing_frame,
)
from messaging.fanout import is_large
from messaging.layer import conversation_group, device_group, user_group
from messaging.models import Device, User
from messaging.moderation import removals_to_replay
from messaging.payloads import ConversationPayload, MessagePayload
from messaging.replay import conversation_last_seqs, replay_page
from ops import degraded
from receipts.resume import resume_points

from .notices import Degraded, Notice, ReceiptText, Resync
from .protocol import FrameError
from .stream import Action, ConnectionStreams

if TYPE_CHECKING:
    from .runtime import GatewayRuntime

logger = logging.getLogger(__name__)


class Transport(Protocol):
    """The socket under a connection (the consumer)."""

    async def send_text(self, text: str) -> None: ...

    async def close_socket(self, code: int) -> None: ...


def _frame_text(event: dict[str, Any], frame: Mapping[str, Any]) -> str:
    """The frame for a layer event, serialized once per process: every socket shares the event."""
    text = event.get("_frame")
    if text is None:
        text = event["_frame"] = json.dumps(frame)
    return text


class Connection:
    def __init__(self, runtime: GatewayRuntime, *, user: User, device: Device, transport: Transport) -> None:
        self.runtime = runtime
        self.user = user
        self.device = device
        self.transport = transport
        self.telemetry = runtime.telemetry()
        self.streams = ConnectionStreams()
        self.large: set[int] = set()
        self.groups: set[str] = set()
        self.events: asyncio.Queue[Mapping[str, Any] | Notice] = asyncio.Queue()
        self.stream_lock = asyncio.Lock()
        self.typing_sent_at: dict[int, float] = {}
        self.helloed = False
        self.closing = False
        self._closed = False
        self._pump: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        self._pump = asyncio.get_running_loop().create_task(self._drain_events())
        await self._join(user_group(self.user.pk))
        await self._join(device_group(self.device.pk))

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
        await self.transport.send_text(json.dumps(frame))

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
        if not self.streams.follows(conversation_id):
            raise FrameError("not_found", "conversation not found")

    async def hello(self, cursors: dict[int, int]) -> None:
        if self.helloed:
            raise FrameError("invalid", "hello was already received on this connection")
        db, hub = self.runtime.db, self.runtime.hub
        points = await db(resume_points)(user=self.user, device_id=self.device.pk, cursors=cursors)
        removals = await db(removals_to_replay)(device=self.device)
        async with self.stream_lock:
            self.helloed = True
            for point in points:
                self.streams.follow(point.conversation_id, held=point.resume_after,
                                    behind=point.resume_after < point.last_seq)
                hub.note_seq(point.conversation_id, point.last_seq)
                if is_large(point.member_count):
                    self.large.add(point.conversation_id)
                await self._join(conversation_group(point.conversation_id))
            # A reconnect storm waits here for the process's replay budget, small gaps first;
            # live events queue behind the stream lock meanwhile.
            async with self.runtime.admission.slot(behind=sum(p.last_seq - p.resume_after for p in points)):
                for point in points:
                    if point.resume_after < point.last_seq:
                        await self._send_page(point.conversation_id, point.resume_after, resuming=True)
            for removal in removals:
                await self.send(removal)
            await self.send(ready_frame({p.conversation_id: p.last_seq for p in points}))
            if degraded.current().shed:
                await self.send(degraded_frame(list(degraded.current().shed)))
        self.telemetry.helloed(resumed=bool(cursors) or any(p.from_cursor for p in points))
        await self.runtime.presence.came_online(self.user.pk)

    async def replay(self, conversation_id: int, after_seq: int, limit: int) -> None:
        self.require_follow(conversation_id)
        behind = max(self.runtime.hub.announced.get(conversation_id, 0) - after_seq, 1)
        async with self.runtime.admission.slot(behind=behind), self.stream_lock:
            await self._send_page(conversation_id, after_seq, limit)

    def ack(self, conversation_id: int, seq: int) -> None:
        self.require_follow(conversation_id)
        self.telemetry.acked(conversation_id, seq)
        self.runtime.acks.add(user_id=self.user.pk, device_id=self.device.pk, conversation_id=conversation_id,
                              seq=seq)

    async def typing(self, conversation_id: int) -> None:
        self.require_follow(conversation_id)
        if conversation_id in self.large:
            return  # large channels carry no typing: it would multiply by thousands
        if degraded.sheds(degraded.TYPING):
            return
        # This connection's throttle first: most keystrokes stop here, without a cache round trip.
        now = time.monotonic()
        if now - self.typing_sent_at.get(conversation_id, 0.0) < settings.PARLEY_TYPING_THROTTLE_MS / 1000:
            return
        self.typing_sent_at[conversation_id] = now
        try:  # then the user's, across devices
            await self.runtime.db(ratelimit.enforce)(ratelimit.TYPING, f"{conversation_id}:{self.user.pk}",
                                                     user=self.user)
        except ParleyError:
            return  # over the rate, or no cache: typing is lossy, dropping it costs nothing
        await self.runtime.presence.typing(conversation_id=conversation_id, user_id=self.user.pk)

    async def _send_page(self, conversation_id: int, after_seq: int, limit: int | None = None, *,
                         resuming: bool = False) -> None:
        """Send one replay page (caller holds the stream lock); catch up live if it was the last.

        ``resuming``: hello's first page, authorized by resume_points and shared by every socket
        of the process resuming from the same seq; a ``replay`` frame's page is authorized again.
        """
        self.streams.client_holds(conversation_id, after_seq)
        if resuming:
            shared = await self.runtime.fills.resume_page(conversation_id, after_seq)
            page, text = shared.page, shared.page_frame()
        else:
            page = await self.runtime.db(replay_page)(user=self.user, conversation_id=conversation_id,
                                                      after_seq=after_seq, limit=limit)
            text = json.dumps(messages_frame(conversation_id, page.messages, has_more=page.has_more))
        self.streams.sent_run(conversation_id, [m["seq"] for m in page.messages])
        await self.transport.send_text(text)
        self.telemetry.wrote(conversation_id, page.messages, path="replay")
        self.streams.page_done(conversation_id, has_more=page.has_more)
        if not page.has_more:
            await self._settle(conversation_id)

    # --- live events, from the hub and the runtime -------------------------------------------
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
            event = await self.events.get()
            self.runtime.hub.note_event_handled(event)  # how long it queued (degraded mode's gateway lag)
            try:
                await self._handle(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad event must not stop the stream; replay repairs
                logger.exception("gateway failed to handle %s", event)

    async def _handle(self, event: Mapping[str, Any] | Notice) -> None:
        if isinstance(event, ReceiptText):
            await self._on_receipt(event)
        elif isinstance(event, Resync):
            await self._resync()
        elif isinstance(event, Degraded):
            await self._tell_degraded(event.shed)
        else:
            await self._on_layer_event(event)

    async def _on_layer_event(self, event: Mapping[str, Any]) -> None:
        kind = event["type"]
        if kind in ("conv.message", "conv.tail"):
            if self.helloed:
                async with self.stream_lock:
                    await self._on_live(event["conversation"], event["seq"],
                                        event if kind == "conv.message" else None)  # type: ignore[arg-type]
        elif kind == "conv.messages":
            if self.helloed:
                async with self.stream_lock:
                    await self._on_batch(event)  # type: ignore[arg-type]
        elif kind == "conv.removed":
            if self.streams.follows(event["conversation"]):
                await self.send(removed_frame(event["conversation"], event["id"], event["seq"]))
        elif kind == "conv.typing":
            if (event["user"] != self.user.pk and self.streams.follows(event["conversation"])
                    and not degraded.sheds(degraded.TYPING)):
                await self.send(typing_frame(event))  # type: ignore[arg-type]
        elif kind == "conv.presence":
            if event["user"] != self.user.pk and not degraded.sheds(degraded.PRESENCE):
                await self.send(presence_frame(event))  # type: ignore[arg-type]
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
        if not self.streams.follows(receipt.conversation_id):
            return
        if receipt.own_user is not None and (receipt.own_user != self.user.pk
                                             or str(self.device.pk) in receipt.except_devices):
            return
        await self.transport.send_text(receipt.text)

    async def _on_live(self, conversation_id: int, seq: int, event: MessageEvent | None) -> None:
        decision = self.streams.on_live(conversation_id, seq)
        if decision.action is Action.SEND and event is not None:
            if self.streams.sent_run(conversation_id, [seq]):
                await self.transport.send_text(_frame_text(event, message_frame(event["message"])))  # type: ignore[arg-type]
                self.telemetry.wrote(conversation_id, [event["message"]], path="direct", event=event)
        elif decision.action in (Action.SEND, Action.FILL):
            await self._fill(conversation_id, self.streams.held(conversation_id), seq)

    async def _on_batch(self, event: BatchEvent) -> None:
        """A large channel's batch: a contiguous run, sent as one ``messages`` frame."""
        conversation_id = event["conversation"]
        decision = self.streams.on_live(conversation_id, event["last_seq"])
        if decision.action not in (Action.SEND, Action.FILL):
            return
        if event["first_seq"] > self.streams.held(conversation_id) + 1:
            await self._fill(conversation_id, self.streams.held(conversation_id), event["first_seq"] - 1)
        messages = event["messages"]
        fresh = self.streams.sent_run(conversation_id, [m["seq"] for m in messages])
        if not fresh:
            return
        if len(fresh) == len(messages):
            text = _frame_text(event, messages_frame(conversation_id, messages, has_more=False))  # type: ignore[arg-type]
            await self.transport.send_text(text)
            self.telemetry.wrote(conversation_id, messages, path="buffered")
        else:
            tail = [m for m in messages if m["seq"] >= fresh[0]]
            await self.send(messages_frame(conversation_id, tail, has_more=False))
            self.telemetry.wrote(conversation_id, tail, path="buffered")

    async def _settle(self, conversation_id: int) -> None:
        """After catching up: fill whatever live events announced while the client was behind."""
        decision = self.streams.owed(conversation_id)
        if decision.action is Action.FILL:
            await self._fill(conversation_id, decision.after_seq, decision.upto_seq)

    async def _fill(self, conversation_id: int, after_seq: int, upto_seq: int) -> None:
        shared = await self.runtime.fills.fill(conversation_id, after_seq, upto_seq)  # one read per process
        page = shared.page
        path = "buffered" if conversation_id in self.large else "direct"
        if page.has_more:
            # Too far behind for a live fill: hand the client a replay page and let it pull.
            self.streams.page_done(conversation_id, has_more=True)
            self.streams.sent_run(conversation_id, [m["seq"] for m in page.messages])
            await self.send(messages_frame(conversation_id, page.messages, has_more=True))
            self.telemetry.wrote(conversation_id, page.messages, path=path)
            return
        fresh = set(self.streams.sent_run(conversation_id, [m["seq"] for m in page.messages]))
        if conversation_id in self.large and len(fresh) > 1:
            # A large channel's members take live batches: the fill goes out as one, not as a
            # frame per message per member.
            if len(fresh) == len(page.messages):
                await self.transport.send_text(shared.page_frame())
                self.telemetry.wrote(conversation_id, page.messages, path=path)
            else:
                run: list[MessagePayload] = [m for m in page.messages if m["seq"] in fresh]
                await self.send(messages_frame(conversation_id, run, has_more=False))
                self.telemetry.wrote(conversation_id, run, path=path)
            return
        for message in page.messages:
            if message["seq"] in fresh:
                await self.transport.send_text(shared.message_frame(message))
                self.telemetry.wrote(conversation_id, [message], path=path)

    async def _resync(self) -> None:
        if not self.helloed:
            return
        stored = await self.runtime.db(conversation_last_seqs)(list(self.streams.cursors()))
        async with self.stream_lock:
            for conversation_id, last_seq in stored.items():
                await self._on_live(conversation_id, last_seq, None)

    async def _on_joined(self, conversation: ConversationPayload) -> None:
        conversation_id = conversation["id"]
        if not self.helloed or self.streams.follows(conversation_id):
            return
        async with self.stream_lock:
            self.streams.follow(conversation_id, held=conversation["last_seq"])
            if is_large(conversation["member_count"]):
                self.large.add(conversation_id)
            await self._join(conversation_group(conversation_id))
            await self.send(conversation_frame("joined", conversation))

    async def _on_left(self, conversation: ConversationPayload) -> None:
        conversation_id = conversation["id"]
        async with self.stream_lock:
            self.streams.unfollow(conversation_id)
            self.large.discard(conversation_id)
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
