"""Receipt frames, coalesced once per gateway process (CONTRACT: "receipt").

Invariant: **at most one ``receipt`` frame per (conversation, user) per
``PARLEY_RECEIPT_COALESCE_MS`` reaches a socket, carrying the latest marks**, and marks
never go backwards: events from two publishers (ack flushes of every gateway, REST reads)
may cross, so pending marks merge by max.

The window is kept per process, not per socket: a ``conv.receipts`` event (one per
conversation per ack flush, messaging.fanout.receipt_route) is merged here once, one timer
per (conversation, user) runs per process, and each frame is serialized once and handed to
every socket it is for. In a ten-member group that acks every message, receipt frames
outnumber message frames several times over; per-socket timers, tasks and JSON were most of
their cost.

Who gets a frame:

* conversations where receipts are broadcast: every socket of the process following it;
* larger ones (``own_only``): only the user's own sockets (the hub's ``user.<id>`` route),
  except the devices whose acks moved the mark (they know what they acked).

Degraded mode level 2 defers receipt broadcasts: flushes keep their marks pending, and
:meth:`ReceiptCoalescer.release` (the gateway tick, when the level drops) sends them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable

from django.conf import settings

from messaging.events import ReceiptsEvent, receipt_frame
from messaging.layer import conversation_group, user_group
from ops import degraded

from .frames import encode
from .notices import ReceiptText, Subscriber

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
        self.pending: dict[tuple[int, int], PendingMarks] = {}
        self._sent_at: dict[tuple[int, int], float] = {}

    def add(self, event: ReceiptsEvent) -> None:
        """A ``conv.receipts`` layer event arrived: merge its marks, schedule their frames."""
        conversation_id, own_only = event["conversation"], bool(event.get("own_only"))
        window = settings.PARLEY_RECEIPT_COALESCE_MS / 1000
        now = self._clock()
        for marks in event["receipts"]:
            key = (conversation_id, marks["user"])
            pending = self.pending.get(key)
            if pending is not None:
                pending.delivered_seq = max(pending.delivered_seq, marks["delivered_seq"])
                pending.read_seq = max(pending.read_seq, marks["read_seq"])
                pending.acked_by &= set(marks.get("devices", ()))  # tell a device unless every
                continue                                           # advance was its own ack
            acked_by = set(marks.get("devices", ()))
            if own_only and not self._anyone_to_tell(marks["user"], acked_by):
                continue  # no socket here but the ones that acked: a timer and a frame for nobody
            self.pending[key] = PendingMarks(marks["delivered_seq"], marks["read_seq"], own_only, acked_by)
            wait = self._sent_at.get(key, -window) + window - now
            self._call_later(max(wait, 0.0), partial(self._flush, key))
        if len(self._sent_at) > 10_000:  # forget windows long over
            self._sent_at = {k: at for k, at in self._sent_at.items() if now - at < window}

    def _anyone_to_tell(self, user_id: int, acked_by: set[str]) -> bool:
        """Whether this process holds a socket of the user other than the devices that acked
        (a large channel's ack flush names every member; most have one device, the acker)."""
        return any(getattr(socket, "device_key", None) not in acked_by for socket in self._sockets_of(user_group(user_id)))

    def _flush(self, key: tuple[int, int]) -> None:
        if degraded.sheds(degraded.RECEIPTS):
            return  # stays pending; release() sends the latest marks when receipts flow again
        pending = self.pending.pop(key, None)
        if pending is None:
            return
        conversation_id, user_id = key
        self._sent_at[key] = self._clock()
        text = encode(receipt_frame(conversation_id, user_id, delivered_seq=pending.delivered_seq,
                                        read_seq=pending.read_seq))
        if pending.own_only:
            notice = ReceiptText(conversation_id, text, own_user=user_id, except_devices=frozenset(pending.acked_by))
            sockets = self._sockets_of(user_group(user_id))
        else:
            notice = ReceiptText(conversation_id, text)
            sockets = self._sockets_of(conversation_group(conversation_id))
        for socket in list(sockets):
            socket.deliver(notice)

    def release(self) -> None:
        """Receipts flow again (degraded mode below level 2): send what was deferred."""
        for key in list(self.pending):
            self._flush(key)
