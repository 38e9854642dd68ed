"""The in-order, gap-free writer of one socket (CONTRACT "Semantics" 3; docs/architecture.md,
"In-order, gap-free delivery").

:class:`StreamWriter` turns the pure decisions of gateway.stream into frames: a live event for
the next seq goes out as is; one beyond it is filled from PostgreSQL first (one read shared
by the sockets of the process, gateway.fills); while the client pages through replay, live
frames of that conversation wait, and whatever was announced meanwhile is filled when the
last page goes out. Large channels' runs go out as one ``messages`` frame, never a frame per
message per member.

Invariant: the stream state has one writer at a time. Every method but :meth:`resync` expects
its caller to hold :attr:`StreamWriter.lock` (the connection takes it around hello, replay
pages and each live event).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Mapping

from messaging.events import BatchEvent, MessageEvent, message_frame, messages_frame
from messaging.models import User
from messaging.payloads import MessagePayload
from messaging.replay import conversation_heads, replay_page

from .changes import ChangeWriter
from .frames import Transport, encode, frame_text, message_json, run_text
from .stream import Action, ConnectionStreams
from .telemetry import SocketTelemetry

if TYPE_CHECKING:
    from .runtime import GatewayRuntime


class StreamWriter:
    def __init__(self, runtime: GatewayRuntime, *, user: User, transport: Transport,
                 telemetry: SocketTelemetry) -> None:
        self.runtime = runtime
        self.user = user
        self.transport = transport
        self.telemetry = telemetry
        self.streams = ConnectionStreams()
        self.large: set[int] = set()  # conversations that take batches (buffered fan-out)
        self.lock = asyncio.Lock()
        # The second stream, under the same lock (gateway.changes).
        self.changes = ChangeWriter(runtime, user=user, transport=transport)

    def follows(self, conversation_id: int) -> bool:
        return self.streams.follows(conversation_id)

    def follow(self, conversation_id: int, *, held: int, behind: bool = False, large: bool = False,
               changes_held: int, changes_behind: bool = False) -> None:
        self.streams.follow(conversation_id, held=held, behind=behind)
        self.changes.follow(conversation_id, held=changes_held, behind=changes_behind)
        if large:
            self.large.add(conversation_id)

    def unfollow(self, conversation_id: int) -> None:
        self.streams.unfollow(conversation_id)
        self.changes.unfollow(conversation_id)
        self.large.discard(conversation_id)

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.transport.send_text(encode(frame))

    # --- replay pages ----------------------------------------------------------------------
    async def page(self, conversation_id: int, after_seq: int, limit: int | None = None, *,
                   resuming: bool = False) -> None:
        """Send one replay page; catch up live if it was the last.

        ``resuming``: hello's first page, authorized by resume_points and shared by every socket
        of the process resuming from the same seq; a ``replay`` frame's page is authorized again.
        """
        self.streams.client_holds(conversation_id, after_seq)
        if resuming:
            behind = self.runtime.hub.messages_behind(conversation_id, after_seq)
            shared = await self.runtime.fills.resume_page(conversation_id, after_seq, behind=behind)
            page, text = shared.page, shared.page_frame()
        else:
            page = await self.runtime.db(replay_page)(user=self.user, conversation_id=conversation_id,
                                                      after_seq=after_seq, limit=limit)
            text = encode(messages_frame(conversation_id, page.messages, has_more=page.has_more))
        self.streams.sent_run(conversation_id, [m["seq"] for m in page.messages])
        await self.transport.send_text(text)
        self.telemetry.wrote(conversation_id, page.messages, path="replay")
        self.streams.page_done(conversation_id, has_more=page.has_more)
        if not page.has_more:
            await self._settle(conversation_id)

    # --- live events -----------------------------------------------------------------------
    async def live(self, conversation_id: int, seq: int, event: MessageEvent | None) -> None:
        """A doorbell announced ``seq`` (``event`` carries the message, or None: a tail check)."""
        decision = self.streams.on_live(conversation_id, seq)
        if decision.action is Action.SEND and event is not None:
            if self.streams.sent_run(conversation_id, [seq]):
                await self.transport.send_text(frame_text(event, message_frame(event["message"])))
                self.telemetry.wrote(conversation_id, [event["message"]], path="direct", event=event)
        elif decision.action in (Action.SEND, Action.FILL):
            await self._fill(conversation_id, self.streams.held(conversation_id), seq)

    async def live_run(self, conversation_id: int, events: list[MessageEvent]) -> None:
        """Several live messages with consecutive seqs queued for this socket: one ``messages``
        frame (CONTRACT: a live batch is a contiguous run), its text joined from each message's
        JSON encoded once per process; what the client already holds is cut, a gap before the
        run is filled from the store."""
        decision = self.streams.on_live(conversation_id, events[-1]["seq"])
        if decision.action not in (Action.SEND, Action.FILL):
            return
        held = self.streams.held(conversation_id)
        if events[0]["seq"] > held + 1:
            await self._fill(conversation_id, held, events[-1]["seq"])
            return
        fresh = self.streams.sent_run(conversation_id, [event["seq"] for event in events])
        if not fresh:
            return
        run = events[len(events) - len(fresh):]
        if len(run) == 1:
            text = frame_text(run[0], message_frame(run[0]["message"]))
        else:
            text = run_text(conversation_id, [message_json(event) for event in run])
        await self.transport.send_text(text)
        self.telemetry.wrote(conversation_id, [event["message"] for event in run], path="direct", event=run[0])

    async def batch(self, event: BatchEvent) -> None:
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
            await self.transport.send_text(frame_text(event, messages_frame(conversation_id, messages,
                                                                             has_more=False)))
            self.telemetry.wrote(conversation_id, messages, path="buffered")
        else:
            tail = [m for m in messages if m["seq"] >= fresh[0]]
            await self.send(messages_frame(conversation_id, tail, has_more=False))
            self.telemetry.wrote(conversation_id, tail, path="buffered")

    async def resync(self) -> None:
        """The layer lost events: compare both streams with the store, fill what is missing
        (takes the lock)."""
        stored = await self.runtime.db(conversation_heads)(list(self.streams.cursors()))
        async with self.lock:
            for conversation_id, heads in stored.items():
                await self.live(conversation_id, heads.last_seq, None)
                await self.changes.live(conversation_id, heads.last_change, None)

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
