"""Receipt frames, coalesced once per gateway process (CONTRACT: "receipt").

Invariant: **at most one frame per conversation per ``PARLEY_RECEIPT_COALESCE_MS`` reaches a
socket for receipts, carrying the latest marks**, so at most one ``receipt`` per
(conversation, user) per window as the contract says; and marks never go backwards: events
from two publishers (ack flushes of every gateway, REST reads) may cross, so pending marks
merge by max.

The window is kept per process and per conversation, not per socket: a ``conv.receipts``
event (one per conversation per ack flush, messaging.fanout.receipt_route) is merged here
once, one timer per conversation runs per process, and each frame is serialized once and
handed to every socket it is for. In a ten-member group that acks every message, receipt
frames outnumbered message frames several times over.

What a socket gets: a socket whose hello asked for ``batch_receipts`` gets one ``receipts``
frame with every user's marks of the window (an extension, docs/api.md); any other socket a
``receipt`` frame per user, as the contract has it.

Who gets them:

* conversations where receipts are broadcast: every socket of the process following it;
* larger ones (``own_only``): only the user's own sockets (the hub's ``user.<id>`` route), a
  ``receipt`` each, except the devices whose acks moved the mark (they know what they acked).

Degraded mode level 2 defers receipt broadcasts: flushes keep their marks pending, and
:meth:`ReceiptCoalescer.release` (the gateway tick, when the level drops) sends them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable

from django.conf import settings

from messaging.events import ReceiptFrame, ReceiptsEvent, receipt_frame, receipts_frame
from messaging.layer import conversation_group, user_group
from ops import degraded

from .frames import encode
from .notices import ReceiptBatch, ReceiptText, Subscriber

Clock = Callable[[], float]
Scheduler = Callable[[float, Callable[[], None]], Any]  # (delay in seconds, callback), like loop.call_later


@dataclass
class PendingMarks:
    delivered_seq: int
    read_seq: int
    own_only: bool
    acked_by: set[str] = field(default_factory=set)  # devices not to tell (own_only)


class ReceiptCoalescer:
    def __init__(self, sockets_of: Callable[[str], Iterable[Subscriber]], *, call_later: Scheduler,
                 clock: Clock = time.monotonic) -> None:
        self._sockets_of = sockets_of  # group name -> the process's sockets registered under it
        self._call_later = call_later
        self._clock = clock
        self.pending: dict[int, dict[int, PendingMarks]] = {}  # conversation -> user -> marks
        self._scheduled: set[int] = set()  # conversations with a flush timer running
        self._sent_at: dict[int, float] = {}  # conversation -> its last flush

    def add(self, event: ReceiptsEvent) -> None:
        """A ``conv.receipts`` layer event arrived: merge its marks, schedule their frames."""
        conversation_id, own_only = event["conversation"], bool(event.get("own_only"))
        pending = self.pending.get(conversation_id, {})
        for marks in event["receipts"]:
            user_id = marks["user"]
            known = pending.get(user_id)
            if known is not None:
                known.delivered_seq = max(known.delivered_seq, marks["delivered_seq"])
                known.read_seq = max(known.read_seq, marks["read_seq"])
                known.acked_by &= set(marks.get("devices", ()))  # tell a device unless every
                continue                                         # advance was its own ack
            acked_by = set(marks.get("devices", ()))
            if own_only and not self._anyone_to_tell(user_id, acked_by):
                continue  # no socket here but the ones that acked: a frame for nobody
            pending[user_id] = PendingMarks(marks["delivered_seq"], marks["read_seq"], own_only, acked_by)
        if not pending:
            return
        self.pending[conversation_id] = pending
        if conversation_id not in self._scheduled:
            window = settings.PARLEY_RECEIPT_COALESCE_MS / 1000
            now = self._clock()
            wait = self._sent_at.get(conversation_id, -window) + window - now
            self._scheduled.add(conversation_id)
            self._call_later(max(wait, 0.0), partial(self._flush, conversation_id))
            if len(self._sent_at) > 10_000:  # forget windows long over
                self._sent_at = {c: at for c, at in self._sent_at.items() if now - at < window}

    def _anyone_to_tell(self, user_id: int, acked_by: set[str]) -> bool:
        """Whether this process holds a socket of the user other than the devices that acked
        (a large channel's ack flush names every member; most have one device, the acker)."""
        return any(getattr(socket, "device_key", None) not in acked_by for socket in self._sockets_of(user_group(user_id)))

    def _flush(self, conversation_id: int) -> None:
        self._scheduled.discard(conversation_id)
        if degraded.sheds(degraded.RECEIPTS):
            return  # stays pending; release() sends the latest marks when receipts flow again
        pending = self.pending.pop(conversation_id, None)
        if not pending:
            return
        self._sent_at[conversation_id] = self._clock()
        broadcast: list[ReceiptFrame] = []
        for user_id, marks in pending.items():
            frame = receipt_frame(conversation_id, user_id, delivered_seq=marks.delivered_seq, read_seq=marks.read_seq)
            if marks.own_only:
                own = ReceiptText(conversation_id, encode(frame), own_user=user_id,
                                  except_devices=frozenset(marks.acked_by))
                for socket in list(self._sockets_of(user_group(user_id))):
                    socket.deliver(own)
            else:
                broadcast.append(frame)
        if broadcast:
            batch = ReceiptBatch(conversation_id, tuple(encode(frame) for frame in broadcast),
                                 encode(receipts_frame(conversation_id, broadcast)))
            for socket in list(self._sockets_of(conversation_group(conversation_id))):
                socket.deliver(batch)

    def release(self) -> None:
        """Receipts flow again (degraded mode below level 2): send what was deferred."""
        for conversation_id in list(self.pending):
            self._flush(conversation_id)
