"""The in-order, gap-free writer of one socket's change stream (CONTRACT v1.1, "The change
stream"; docs/architecture.md, "Change stream").

Changes ride the machinery messages ride: the same pure state machine
(:class:`~gateway.stream.ConnectionStreams`, counting change numbers instead of seqs), the
same shared reads for gap fills and hello's first pages (gateway.fills), and the same lock as
the socket's :class:`~gateway.writer.StreamWriter`, so a socket's messages and changes leave
it in the order they were decided. A live change for the next number goes out as its
``change`` frame; one beyond it is filled from PostgreSQL first; while the client pages
through ``replay_changes``, live changes wait and the gap is filled when the last page goes out.

Invariant: every method expects its caller to hold the writer's lock.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from messaging.events import ChangeEvent, change_frame, changes_frame
from messaging.models import User
from messaging.replay import change_replay_page

from .frames import Transport, encode, frame_text
from .stream import Action, ConnectionStreams

if TYPE_CHECKING:
    from .runtime import GatewayRuntime


class ChangeWriter:
    def __init__(self, runtime: GatewayRuntime, *, user: User, transport: Transport) -> None:
        self.runtime = runtime
        self.user = user
        self.transport = transport
        self.streams = ConnectionStreams()
        self.sent = 0  # change records written (tests and the bench read it)

    def follow(self, conversation_id: int, *, held: int, behind: bool = False) -> None:
        self.streams.follow(conversation_id, held=held, behind=behind)

    def unfollow(self, conversation_id: int) -> None:
        self.streams.unfollow(conversation_id)

    async def page(self, conversation_id: int, after: int, limit: int | None = None, *,
                   resuming: bool = False) -> None:
        """Send one page of changes; catch up live if it was the last. ``resuming``: hello's
        first page, shared by the sockets of the process resuming from the same number."""
        self.streams.client_holds(conversation_id, after)
        if resuming:
            behind = self.runtime.hub.changes_behind(conversation_id, after)
            shared = await self.runtime.fills.change_resume_page(conversation_id, after, behind=behind)
            page, text = shared.page, shared.page_frame()
        else:
            page = await self.runtime.db(change_replay_page)(user=self.user, conversation_id=conversation_id,
                                                             after=after, limit=limit)
            text = encode(changes_frame(conversation_id, page.changes, has_more=page.has_more))
        self.streams.sent_run(conversation_id, [c["change"] for c in page.changes])
        await self.transport.send_text(text)
        self.sent += len(page.changes)
        self.streams.page_done(conversation_id, has_more=page.has_more)
        if not page.has_more:
            decision = self.streams.owed(conversation_id)
            if decision.action is Action.FILL:
                await self._fill(conversation_id, decision.after_seq, decision.upto_seq)

    async def live(self, conversation_id: int, change: int, event: ChangeEvent | None) -> None:
        """A doorbell announced change number ``change`` (``event`` carries the record, or
        None: a tail check or a resync found the store ahead)."""
        decision = self.streams.on_live(conversation_id, change)
        if decision.action is Action.SEND and event is not None:
            if self.streams.sent_run(conversation_id, [change]):
                await self.transport.send_text(frame_text(event, change_frame(event["record"])))
                self.sent += 1
        elif decision.action in (Action.SEND, Action.FILL):
            await self._fill(conversation_id, self.streams.held(conversation_id), change)

    async def _fill(self, conversation_id: int, after: int, upto: int) -> None:
        shared = await self.runtime.fills.change_fill(conversation_id, after, upto)  # one read per process
        page = shared.page
        if page.has_more:
            # Too far behind for a live fill: a page, and the client pulls the rest.
            self.streams.page_done(conversation_id, has_more=True)
            self.streams.sent_run(conversation_id, [c["change"] for c in page.changes])
            await self.transport.send_text(encode(changes_frame(conversation_id, page.changes, has_more=True)))
            self.sent += len(page.changes)
            return
        fresh = set(self.streams.sent_run(conversation_id, [c["change"] for c in page.changes]))
        for record in page.changes:
            if record["change"] in fresh:
                await self.transport.send_text(shared.change_frame(record))
                self.sent += 1
