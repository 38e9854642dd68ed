"""Coalesced ack writes, per gateway process (docs/architecture.md, "Receipts").

Every socket of the process hands its ``ack`` frames here. Acks are merged by max per
(user, device, conversation) and written every ``PARLEY_ACK_FLUSH_MS`` in ONE transaction
for the whole process (receipts.watermarks.record_acks): the database cost of acks grows
with the flush rate, not with the number of sockets or messages. A socket that closes
flushes at once, so a clean disconnect loses nothing.

Crash bound: a gateway killed between flushes loses at most one window of acks. Those
devices' stored cursors are then at most ``PARLEY_ACK_FLUSH_MS`` of traffic behind what
they had; on reconnect, replay repeats those messages and the client drops them by seq.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings

from messaging import fanout
from messaging.events import ReceiptMarks
from messaging.layer import apublish
from receipts.watermarks import AdvancedReceipt, record_acks

from .db import DatabaseThreads

logger = logging.getLogger(__name__)


class AckBatcher:
    def __init__(self, *, db: DatabaseThreads) -> None:
        self.db = db
        self.pending: dict[tuple[int, Any, int], int] = {}
        self._scheduled: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()

    def add(self, *, user_id: int, device_id: Any, conversation_id: int, seq: int) -> None:
        key = (user_id, device_id, conversation_id)
        if seq > self.pending.get(key, -1):
            self.pending[key] = seq
        if self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_later(settings.PARLEY_ACK_FLUSH_MS / 1000,
                                                                    self._flush_soon)

    def _flush_soon(self) -> None:
        self._scheduled = None
        asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        async with self._lock:
            batch, self.pending = self.pending, {}
            if not batch:
                return
            try:
                advanced = await self.db(record_acks)(batch)
            except Exception:  # noqa: BLE001 - keep them for the next window; a lost ack only repeats replay
                logger.warning("ack flush of %d entries failed; retrying next window", len(batch), exc_info=True)
                for key, seq in batch.items():
                    if seq > self.pending.get(key, -1):
                        self.pending[key] = seq
                return
        # One event per conversation for all its members that advanced, published concurrently.
        acked_by: dict[tuple[int, int], list[str]] = {}
        for user_id, device_id, conversation_id in batch:
            acked_by.setdefault((conversation_id, user_id), []).append(str(device_id))
        by_conversation: dict[int, list[AdvancedReceipt]] = {}
        for receipt in advanced:
            by_conversation.setdefault(receipt.conversation_id, []).append(receipt)
        routes = [
            fanout.receipt_route(
                [_marks(r, acked_by.get((conversation_id, r.user_id), [])) for r in receipts],
                member_count=receipts[0].member_count, conversation_id=conversation_id)
            for conversation_id, receipts in by_conversation.items()
        ]
        await asyncio.gather(*(apublish(group, event) for group, event in routes))


def _marks(receipt: AdvancedReceipt, devices: list[str]) -> ReceiptMarks:
    return {"user": receipt.user_id, "delivered_seq": receipt.delivered_seq, "read_seq": receipt.read_seq,
            "devices": devices}
