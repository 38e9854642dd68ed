"""Frames still waiting in sockets' inbound queues: a flood's backlog, seen while it builds.

The consumer learns how long a frame waited only when it takes the frame (the handled waits in
gateway.telemetry), so a backlog counted only once it was being served. Under a typing flood
those waits passed degraded mode's 500 ms about 3 s in, while messages already waited 2-4 s,
and clients were told after 4-5 s (issue 15, goal 5; docs/benchmarks/runs/2026-12-07-gc). At
each tick, the age of the oldest frame still queued for each socket says the same thing as
the backlog forms.

parley-gateway's protocol (gateway.server) stamps each frame's arrival and puts it on the
socket's application queue, which daphne made; the protocol registers that queue here while
the socket is open. The oldest frame is the queue's head, read from asyncio.Queue's
underlying deque (it has no public peek). The protocol unregisters the queue on close, so a
closed socket's unread frames never count.
"""
from __future__ import annotations

import asyncio
import weakref
from typing import Any

_open_queues: weakref.WeakSet[asyncio.Queue[Any]] = weakref.WeakSet()


def watch(queue: asyncio.Queue[Any]) -> None:
    _open_queues.add(queue)


def forget(queue: asyncio.Queue[Any]) -> None:
    _open_queues.discard(queue)


def queued_ages(now: float) -> list[float]:
    """For each open socket with a frame waiting, how long (``now``: time.monotonic()) its
    oldest frame has waited."""
    ages = []
    for queue in list(_open_queues):
        waiting = getattr(queue, "_queue", None)
        if waiting:
            head = waiting[0]
            received_at = head.get("received_at") if isinstance(head, dict) else None
            if received_at is not None:
                ages.append(now - received_at)
    return ages
