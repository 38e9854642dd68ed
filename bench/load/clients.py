"""Lean asyncio Parley devices, many in one process, and the end-of-run check against the database.

A ``Device`` speaks the protocol of the reference client (ops/client.py): a ticket,
``hello`` with its cursors, ``messages`` pages pulled with ``replay`` while ``has_more``,
cumulative ``ack`` frames coalesced per device over ``ack_ms`` (100 ms, as the reference and
browser clients; 0 acks after every frame that brought messages, < 0 never acks), dedupe by
seq, reconnects with exponential backoff and jitter (or after a ``reconnect`` frame's
``after_ms``), and sends retried with the same ``client_msg_id`` until ``send.ok``. It is leaner than the reference client (one
``json.loads`` per frame, tickets issued straight into the shared cache instead of over
HTTP, no per-message objects), so one process holds a thousand of them.

Every check is per device against the server's seqs: a ``message`` whose seq is at or below
the device's cursor is a *duplicate* (dropped); one above cursor + 1 on a connection is a
*gap*, a *seq break* (reordered or skipped: the stream promise says neither happens; the
client pulls the gap with ``replay``, as static/parley/socket.js does, so the run can go on).
Both are also counted in the message's phase (bench/load/recorder.py). At the end,
``verify`` wants every device to hold exactly seq ``base+1 .. last_seq`` of each of its
conversations (``base``: the seq when the run began); anything short of that is *lost*.
The relay's sockets are in bench/load/relayclients.py.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from websockets.asyncio.client import connect

from bench.load.recorder import Phase, Recorder


@dataclass
class Device:
    index: int
    user_id: int
    device_id: str
    conversations: list[int]
    base: dict[int, int]                      # seq of each conversation when the run began
    cursors: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0
    gaps: int = 0
    connections: int = 0
    failures: Counter = field(default_factory=Counter)
    ready_at: float = 0.0                     # time.time() of the last ready frame
    caught_up_at: float = 0.0                 # first moment every cursor reached ready's last_seq
    ready_seqs: dict[int, int] = field(default_factory=dict)
    frames: Counter = field(default_factory=Counter)
    degraded: list[tuple[float, list[str]]] = field(default_factory=list)   # (time.time(), shed)
    silent: bool = False                      # sends no acks (a phone on a train), while set

    def __post_init__(self) -> None:
        self.cursors = dict(self.base)
        self.ws = None
        self.ready = asyncio.Event()
        self.resume = asyncio.Event()
        self.resume.set()
        self.stopping = False
        self.task: asyncio.Task | None = None
        self.pending: dict[str, tuple[str, float, float]] = {}   # client_msg_id -> (frame, last try, sent at)
        self.reconnect_after: float | None = None
        self.held: dict[int, int] = {}
        self.ack_dirty: set[int] = set()
        self.ack_scheduled = False


class Pool:
    """Runs Parley devices against a list of base URLs (the load balancer)."""

    def __init__(self, urls: list[str], ticket: Callable[[Device], str], recorder: Recorder,
                 ack_ms: float = 100.0, backoff_base: float = 0.2, backoff_cap: float = 5.0) -> None:
        self.urls = urls
        self.ticket = ticket
        self.recorder = recorder
        self.ack_ms = ack_ms
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.devices: list[Device] = []
        self.on_ready: Callable[[Device], None] | None = None
        self.sent_frames: Counter = Counter()   # acks and replay requests sent, all devices
        self.retry_task: asyncio.Task | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def add(self, devices: list[Device]) -> None:
        self.devices += devices

    async def start(self, devices: list[Device], parallel: int = 50, timeout: float = 120.0) -> float:
        """Connect the devices (at most ``parallel`` handshakes at once) until all are ready."""
        start = time.monotonic()
        gate = asyncio.Semaphore(parallel)

        async def one(dev: Device) -> None:
            async with gate:
                dev.task = asyncio.get_running_loop().create_task(self._run(dev))
                await asyncio.wait_for(dev.ready.wait(), timeout)

        await asyncio.gather(*(one(d) for d in devices))
        if self.retry_task is None:
            self.retry_task = asyncio.get_running_loop().create_task(self._retry_loop())
        return time.monotonic() - start

    async def stop(self) -> None:
        for dev in self.devices:
            dev.stopping = True
            dev.resume.set()
        await asyncio.gather(*(self._close(d) for d in self.devices))
        for dev in self.devices:
            if dev.task is not None:
                dev.task.cancel()
        if self.retry_task is not None:
            self.retry_task.cancel()
            self.retry_task = None
        await asyncio.sleep(0)

    async def _close(self, dev: Device) -> None:
        if dev.ws is not None:
            try:
                await asyncio.wait_for(dev.ws.close(), 3)
            except Exception:  # noqa: BLE001
                pass

    def drop(self, devices: list[Device]) -> None:
        """Cut the devices' TCP connections at once (no close frame) and hold them offline."""
        for dev in devices:
            dev.resume.clear()
            dev.ready.clear()
            if dev.ws is not None:
                dev.ws.transport.abort()

    def come_back(self, devices: list[Device]) -> None:
        for dev in devices:
            dev.ready_at = dev.caught_up_at = 0.0
            dev.resume.set()

    # --- one device ---------------------------------------------------------------------------
    async def _run(self, dev: Device) -> None:
        attempt = 0
        while not dev.stopping:
            await dev.resume.wait()
            if dev.stopping:
                break
            url = self.urls[(dev.index + dev.connections + attempt) % len(self.urls)]
            try:
                await self._session(dev, url)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure: back off, resume from cursors
                dev.failures[type(error).__name__] += 1
            dev.ready.clear()
            dev.ws = None
            if dev.stopping or not dev.resume.is_set():
                continue
            if dev.reconnect_after is not None:
                delay, dev.reconnect_after = dev.reconnect_after, None
                await asyncio.sleep(delay)
                continue
            attempt += 1
            delay = min(self.backoff_cap, self.backoff_base * 2 ** min(attempt, 6))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _session(self, dev: Device, base: str) -> None:
        ticket = await asyncio.to_thread(self.ticket, dev)
        async with connect(f"{base}/ws/v1/?device={dev.device_id}&ticket={ticket}", max_size=None,
                           compression=None, ping_interval=20, ping_timeout=60, open_timeout=30,
                           close_timeout=2) as ws:
            dev.ws = ws
            dev.connections += 1
            dev.held = dict(dev.cursors)
            # As the browser and the reference client: receipts batched per conversation and window.
            await ws.send(json.dumps({"type": "hello", "cursors": {str(k): v for k, v in dev.cursors.items()},
                                      "batch_receipts": True}))
            async for raw in ws:
                self._frame(dev, ws, raw)

    def _frame(self, dev: Device, ws, raw: str | bytes) -> None:
        now = time.time()
        frame = json.loads(raw)
        kind = frame["type"]
        dev.frames[kind] += 1
        if kind == "message":
            if self._accept(dev, ws, frame["message"], now):
                self._ack(dev, ws, frame["message"]["conversation"])
        elif kind == "messages":
            conversation = frame["conversation"]
            got = False
            for message in frame["messages"]:
                got = self._accept(dev, ws, message, now) or got
            if got:
                self._ack(dev, ws, conversation)
            if frame["has_more"]:
                self.sent_frames["replay"] += 1
                self._send(ws, {"type": "replay", "conversation": conversation,
                                "after_seq": dev.cursors.get(conversation, 0)})
            self._check_caught_up(dev, now)
        elif kind == "ready":
            dev.ready_seqs = {int(k): v for k, v in frame["conversations"].items()}
            dev.ready_at = now
            dev.ready.set()
            self._check_caught_up(dev, now)
            for cmid, (text, _, sent_at) in list(dev.pending.items()):   # resend what was not confirmed
                dev.pending[cmid] = (text, time.monotonic(), sent_at)
                self._send(ws, text)
            if self.on_ready is not None:
                self.on_ready(dev)
        elif kind == "send.ok":
            cmid = frame["client_msg_id"]
            pending = dev.pending.pop(cmid, None)
            if pending is not None:
                self.recorder.confirmed(cmid, pending[2], now)
        elif kind == "send.error":
            cmid = frame["client_msg_id"]
            if frame.get("code") not in ("unavailable", "rate_limited") and dev.pending.pop(cmid, None):
                self.recorder.send_error(cmid, frame.get("code"))
        elif kind == "reconnect":
            dev.reconnect_after = frame["after_ms"] / 1000
        elif kind == "degraded":
            dev.degraded.append((now, frame.get("shed", [])))

    def _accept(self, dev: Device, ws, message: dict[str, Any], now: float) -> bool:
        conversation, seq = message["conversation"], message["seq"]
        cursor = dev.cursors.get(conversation, 0)
        held = dev.held.get(conversation, cursor)
        if seq <= cursor:
            dev.duplicates += 1
            self.recorder.flag(message.get("body", ""), "duplicates")
            return False
        if seq != cursor + 1:
            if seq != held + 1:
                dev.gaps += 1  # this connection's stream jumped
                self.recorder.flag(message.get("body", ""), "seq_breaks")
            dev.held[conversation] = max(held, seq)
            # Never skip: pull the missing run (the server promises this never happens).
            self.sent_frames["replay"] += 1
            self._send(ws, {"type": "replay", "conversation": conversation, "after_seq": cursor})
            return False
        dev.cursors[conversation] = seq
        dev.held[conversation] = max(held, seq)
        sender = message["sender"]["id"]
        self.recorder.delivered(message.get("body", ""), sender == dev.user_id, now, dev.index, sender)
        if not dev.caught_up_at and dev.ready_seqs:
            self._check_caught_up(dev, now)
        return True

    def _check_caught_up(self, dev: Device, now: float) -> None:
        if not dev.caught_up_at and dev.ready.is_set() and all(
                dev.cursors.get(c, 0) >= s for c, s in dev.ready_seqs.items() if c in dev.base):
            dev.caught_up_at = now

    def _ack(self, dev: Device, ws, conversation: int) -> None:
        if self.ack_ms < 0 or dev.silent:
            return
        if self.ack_ms == 0:
            self.sent_frames["ack"] += 1
            self._send(ws, {"type": "ack", "conversation": conversation, "seq": dev.cursors[conversation]})
            return
        dev.ack_dirty.add(conversation)
        if not dev.ack_scheduled:
            dev.ack_scheduled = True
            asyncio.get_running_loop().call_later(self.ack_ms / 1000, self._flush_acks, dev, ws)

    def _flush_acks(self, dev: Device, ws) -> None:
        dev.ack_scheduled = False
        for conversation in dev.ack_dirty:
            self.sent_frames["ack"] += 1
            self._send(ws, {"type": "ack", "conversation": conversation, "seq": dev.cursors[conversation]})
        dev.ack_dirty.clear()

    def _send(self, ws, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        asyncio.get_running_loop().create_task(self._write(ws, text))

    @staticmethod
    async def _write(ws, text: str) -> None:
        try:
            await ws.send(text)
        except Exception:  # noqa: BLE001 - the connection went; the reconnect resends
            pass

    # --- sending ------------------------------------------------------------------------------
    def send(self, dev: Device, conversation: int, phase: Phase, pad: str, members: int) -> None:
        """Send a message now if the device is connected, else as soon as it is; retried until confirmed."""
        now = time.time()
        cmid = f"{phase.label}:{uuid.uuid4().hex[:12]}"
        text = json.dumps({"type": "send", "conversation": conversation, "client_msg_id": cmid,
                           "body": self.recorder.body(phase.label, now, pad)})
        dev.pending[cmid] = (text, time.monotonic(), now)
        phase.sent += 1
        phase.expected += members
        if not phase.first_send:
            phase.first_send = now
        phase.last_send = now
        if dev.ready.is_set() and dev.ws is not None:
            self._send(dev.ws, text)

    async def _retry_loop(self, every: float = 1.0, after: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for dev in self.devices:
                if not dev.pending or not dev.ready.is_set() or dev.ws is None:
                    continue
                for cmid, (text, tried, sent_at) in list(dev.pending.items()):
                    if now - tried > after:
                        dev.pending[cmid] = (text, now, sent_at)
                        self._send(dev.ws, text)

    def unconfirmed(self) -> int:
        return sum(len(d.pending) for d in self.devices)

    def typing(self, dev: Device, conversation: int) -> None:
        if dev.ready.is_set() and dev.ws is not None:
            self._send(dev.ws, {"type": "typing", "conversation": conversation})


def verify(devices: list[Device], last_seqs: dict[int, int]) -> dict[str, Any]:
    """Every device got seq base+1..last_seq of each conversation exactly once, in order."""
    lost = 0
    short_devices = 0
    expected = 0
    for dev in devices:
        short = 0
        for conversation, base in dev.base.items():
            want = last_seqs.get(conversation, base) - base
            expected += want
            have = dev.cursors.get(conversation, base) - base
            short += max(0, want - have)
        lost += short
        short_devices += bool(short)
    return {
        "devices": len(devices),
        "expected_deliveries": expected,
        "lost": lost,
        "devices_short": short_devices,
        "duplicates": sum(d.duplicates for d in devices),
        "reordered_or_gaps": sum(d.gaps for d in devices),
        "exactly_once_in_order": lost == 0 and not any(d.duplicates or d.gaps for d in devices),
        "connections": sum(d.connections for d in devices),
        "connect_failures": dict(sum((d.failures for d in devices), Counter())),
    }
