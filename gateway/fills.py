"""Reads shared by the sockets of one gateway process: gap fills and hello's first pages.

When a doorbell is lost or arrives out of order (a loaded gateway, a Redis hiccup, the hub's
tail check), every socket of the process that follows the conversation finds the same gap
at the same moment: they all held seq N and were just told of N + k. Reading
(N, N + k] once per socket puts hundreds of identical queries on PostgreSQL exactly when
the system is already behind, and serializes the same messages once per socket.

The same holds for a reconnect storm: the members of a conversation who were cut off together
come back with the same cursor, and each ``hello`` would read and serialize the same first
page of what they missed.

The change stream (edits, deletes, reactions, removals) has the same gaps and storms, and
shares its reads the same way.

Invariant: **one read per (kind, conversation, after, upto or limit) in flight per process**, its result
shared by every socket that asks while it runs and for ``RETAIN_SECONDS`` after (the sockets'
pumps reach the gap a few loop turns apart), ``RESUME_RETAIN_SECONDS`` for hello's first pages
(a storm's hellos arrive over seconds).

A hello's first page is replay, so its read runs within the process's replay budget
(ops.admission): the read takes the slot, not the sockets. The first socket to ask queues
the read; every socket that asks for the same page meanwhile waits for that read, and none
takes a slot of its own (each taking one had queued a storm's sockets one by one behind a
page already read for them). A shared page is what PostgreSQL held when it
was read; a change after that arrives as its own change (and, for a removal,
``message.removed``) with a higher ``version``, exactly as it would after a socket's own
read, and clients keep the newest version of a message.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, cast

from messaging.events import change_frame, changes_frame, message_frame, messages_frame
from messaging.payloads import ChangePayload, MessagePayload
from messaging.replay import (
    ChangePage,
    ReplayPage,
    change_fill_range,
    change_page,
    fill_range,
    resume_page,
)
from ops.admission import ReplayAdmission

from .db import DatabaseThreads
from .frames import encode

RETAIN_SECONDS = 0.5
RESUME_RETAIN_SECONDS = 5.0


class SharedPage:
    """A fill's page, and each message's ``message`` frame serialized once for all sockets."""

    def __init__(self, page: ReplayPage, *, read_at: float) -> None:
        self.page = page
        self.read_at = read_at
        self._texts: dict[int, str] = {}

    def message_frame(self, message: MessagePayload) -> str:
        text = self._texts.get(message["seq"])
        if text is None:
            text = self._texts[message["seq"]] = encode(message_frame(message))
        return text

    def page_frame(self) -> str:
        """The whole page as one ``messages`` frame."""
        text = self._texts.get(-1)
        if text is None:
            text = self._texts[-1] = encode(messages_frame(self.page.conversation_id, self.page.messages,
                                                               has_more=self.page.has_more))
        return text


class SharedChangePage:
    """A change fill's page, and each record's ``change`` frame serialized once for all sockets."""

    def __init__(self, page: ChangePage, *, read_at: float) -> None:
        self.page = page
        self.read_at = read_at
        self._texts: dict[int, str] = {}

    def change_frame(self, record: ChangePayload) -> str:
        text = self._texts.get(record["change"])
        if text is None:
            text = self._texts[record["change"]] = encode(change_frame(record))
        return text

    def page_frame(self) -> str:
        text = self._texts.get(-1)
        if text is None:
            text = self._texts[-1] = encode(changes_frame(self.page.conversation_id, self.page.changes,
                                                              has_more=self.page.has_more))
        return text


Shared = SharedPage | SharedChangePage


class FillReader:
    def __init__(self, *, db: DatabaseThreads, admission: ReplayAdmission) -> None:
        self.db = db
        self.admission = admission
        self._pages: dict[tuple[str, int, int, int], asyncio.Task[Any]] = {}
        self.reads = 0  # database reads made (tests compare it with the sockets that asked)

    async def fill(self, conversation_id: int, after_seq: int, upto_seq: int) -> SharedPage:
        """The live path's gap fill (after_seq, upto_seq]."""
        return cast(SharedPage, await self._shared(("fill", conversation_id, after_seq, upto_seq)))

    async def resume_page(self, conversation_id: int, after_seq: int, *, behind: int) -> SharedPage:
        """A hello's first page of a conversation after ``after_seq``, read within the replay
        budget (``behind``: how many messages the first socket to ask is missing)."""
        return cast(SharedPage, await self._shared(("resume", conversation_id, after_seq, 0), behind=behind))

    async def change_fill(self, conversation_id: int, after: int, upto: int) -> SharedChangePage:
        """The change stream's gap fill (after, upto]."""
        return cast(SharedChangePage, await self._shared(("change-fill", conversation_id, after, upto)))

    async def change_resume_page(self, conversation_id: int, after: int, *, behind: int) -> SharedChangePage:
        """A hello's first page of a conversation's changes after ``after``, within the budget."""
        return cast(SharedChangePage, await self._shared(("change-resume", conversation_id, after, 0), behind=behind))

    async def _shared(self, key: tuple[str, int, int, int], *, behind: int = 0) -> Shared:
        loop = asyncio.get_running_loop()
        self._forget_old(loop.time())
        shared = self._pages.get(key)
        if shared is None:
            shared = self._pages[key] = loop.create_task(self._read(key, behind=behind))
        # shield: a socket closing mid-read must not cancel the read the others wait for.
        return await asyncio.shield(shared)

    async def _read(self, key: tuple[str, int, int, int], *, behind: int) -> Shared:
        """The read, once; a hello's page (``behind`` > 0) first waits for a replay slot. Gap fills
        never wait: they are the live path."""
        kind, conversation_id, after, upto = key
        reads: dict[str, Callable[[], Awaitable[Any]]] = {
            "fill": lambda: self.db(fill_range)(conversation_id=conversation_id, after_seq=after, upto_seq=upto),
            "resume": lambda: self.db(resume_page)(conversation_id=conversation_id, after_seq=after),
            "change-fill": lambda: self.db(change_fill_range)(conversation_id=conversation_id, after=after, upto=upto),
            "change-resume": lambda: self.db(change_page)(conversation_id=conversation_id, after=after),
        }
        try:
            async with self.admission.slot(behind=behind):
                self.reads += 1
                page = await reads[kind]()
        except BaseException:
            self._pages.pop(key, None)  # the next ask reads again
            raise
        read_at = asyncio.get_running_loop().time()
        return SharedPage(page, read_at=read_at) if isinstance(page, ReplayPage) else SharedChangePage(page, read_at=read_at)

    def _forget_old(self, now: float) -> None:
        for key, shared in list(self._pages.items()):
            retain = RESUME_RETAIN_SECONDS if key[0] in ("resume", "change-resume") else RETAIN_SECONDS
            if shared.done() and (shared.cancelled() or shared.exception() is not None
                                  or now - shared.result().read_at > retain):
                del self._pages[key]
