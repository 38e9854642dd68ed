"""Lean asyncio clients: many Parley devices (or relay sockets) in one process.

A ``Device`` speaks the protocol of the reference client (messaging/client.py): a ticket,
``hello`` with its cursors, ``messages`` pages pulled with ``replay`` while ``has_more``,
a cumulative ``ack`` after every frame that brought messages (``ack_ms`` > 0 coalesces them),
dedupe by seq, reconnects with exponential backoff and jitter (or after a ``reconnect``
frame's ``after_ms``), and sends retried with the same ``client_msg_id`` until ``send.ok``.
It is leaner than the reference client (one ``json.loads`` per frame, tickets issued
straight into the shared cache instead of over HTTP, no per-message objects), so one process
holds a thousand of them.

Every check is per device against the server's seqs: a ``message`` whose seq is at or below
the device's cursor is a *duplicate*; one above cursor + 1 on a connection is a *gap*
(reordered or skipped: the stream promise says neither happens; the client pulls the gap
with ``replay`` so the run can go on). At the end, a device must hold exactly seq
``base+1 .. last_seq`` of each of its conversations (``base``: the seq when the run
began); anything short of that is *lost*.

Send-to-deliver latency comes from the body: ``<label>|<time.time() at first send>|...``,
taken in this process, compared with ``time.time()`` when the frame carrying it is parsed.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from websockets.asyncio.client import connect


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class Phase:
    """Deliveries of the messages sent in one labelled part of a scenario."""
    label: str
    offered_msgs_per_s: float = 0.0
    sent: int = 0
    confirmed: int = 0
    send_errors: Counter = field(default_factory=Counter)
    expected: int = 0          # deliveries: one per member device, the sender's own included
    delivered: int = 0
    latencies: list[float] = field(default_factory=list)     # other members' devices only
    samples: list[tuple[float, float]] = field(default_factory=list)  # (received at, latency)
    first_send: float = 0.0
    last_send: float = 0.0
    last_delivery: float = 0.0
    send_lag_max: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        span = max(self.last_delivery, self.last_send) - self.first_send if self.first_send else 0.0
        return {
            "phase": self.label,
            "offered_msgs_per_s": round(self.offered_msgs_per_s, 1),
            "messages": self.sent,
            "confirmed": self.confirmed,
            "send_errors": dict(self.send_errors),
            "deliveries": self.delivered,
            "expected": self.expected,
            "missing_after_drain": self.expected - self.delivered,
            "deliveries_per_s": round(self.delivered / span) if span > 0 else 0,
            "stored_msgs_per_s": round(self.sent / span, 1) if span > 0 else 0,
            "p50_ms": round(pct(lat, 0.50) * 1000, 1),
            "p95_ms": round(pct(lat, 0.95) * 1000, 1),
            "p99_ms": round(pct(lat, 0.99) * 1000, 1),
            "max_ms": round(lat[-1] * 1000, 1) if lat else float("nan"),
            "generator_lag_max_ms": round(self.send_lag_max * 1000, 1),
        }


class Recorder:
    """Attributes each delivery to the phase its message was sent in."""

    def __init__(self) -> None:
        self.phases: dict[str, Phase] = {}
        self.t0 = time.time()
        self.unattributed = 0

    def phase(self, label: str, rate: float = 0.0) -> Phase:
        if label not in self.phases:
            self.phases[label] = Phase(label, rate)
        return self.phases[label]

    def body(self, label: str, sent_at: float, pad: str) -> str:
        return f"{label}|{sent_at:.6f}|{pad}"

    def delivered(self, body: str, own: bool, now: float) -> None:
        try:
            label, sent, _ = body.split("|", 2)
            phase = self.phases[label]
            sent_at = float(sent)
        except (ValueError, KeyError):
            self.unattributed += 1
            return
        phase.delivered += 1
        phase.last_delivery = max(phase.last_delivery, now)
        if not own:
            phase.latencies.append(now - sent_at)
            phase.samples.append((now - self.t0, now - sent_at))


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
    degraded: list[tuple[float, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cursors = dict(self.base)
        self.ws = None
        self.ready = asyncio.Event()
        self.resume = asyncio.Event()
        self.resume.set()
        self.stopping = False
        self.task: asyncio.Task | None = None
        self.pending: dict[str, tuple[str, float]] = {}   # client_msg_id -> (frame, last try)
        self.reconnect_after: float | None = None
        self.held: dict[int, int] = {}
        self.ack_dirty: set[int] = set()
        self.ack_scheduled = False


class Pool:
    """Runs Parley devices against a list of base URLs (the load balancer)."""

    def __init__(self, urls: list[str], ticket: Callable[[Device], str], recorder: Recorder,
                 ack_ms: float = 0.0, backoff_base: float = 0.2, backoff_cap: float = 5.0) -> None:
        self.urls = urls
        self.ticket = ticket
        self.recorder = recorder
        self.ack_ms = ack_ms
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.devices: list[Device] = []
        self.on_ready: Callable[[Device], None] | None = None
        self.pending_owner: dict[str, Device] = {}
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
            await ws.send(json.dumps({"type": "hello", "cursors": {str(k): v for k, v in dev.cursors.items()}}))
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
                self._send(ws, {"type": "replay", "conversation": conversation,
                                "after_seq": dev.cursors.get(conversation, 0)})
            self._check_caught_up(dev, now)
        elif kind == "ready":
            dev.ready_seqs = {int(k): v for k, v in frame["conversations"].items()}
            dev.ready_at = now
            dev.ready.set()
            self._check_caught_up(dev, now)
            for cmid, (text, _) in list(dev.pending.items()):   # resend what was not confirmed
                dev.pending[cmid] = (text, time.monotonic())
                self._send(ws, text)
            if self.on_ready is not None:
                self.on_ready(dev)
        elif kind == "send.ok":
            cmid = frame["client_msg_id"]
            if dev.pending.pop(cmid, None) is not None:
                self.recorder.phases.get(cmid.split(":", 1)[0], Phase("?")).confirmed += 1
        elif kind == "send.error":
            cmid = frame["client_msg_id"]
            if frame.get("code") not in ("unavailable", "rate_limited") and dev.pending.pop(cmid, None):
                self.recorder.phases.get(cmid.split(":", 1)[0], Phase("?")).send_errors[frame.get("code")] += 1
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
            return False
        if seq != cursor + 1:
            if seq != held + 1:
                dev.gaps += 1  # this connection's stream jumped
            dev.held[conversation] = max(held, seq)
            # Never skip: pull the missing run (the server promises this never happens).
            self._send(ws, {"type": "replay", "conversation": conversation, "after_seq": cursor})
            return False
        dev.cursors[conversation] = seq
        dev.held[conversation] = max(held, seq)
        self.recorder.delivered(message.get("body", ""), message["sender"]["id"] == dev.user_id, now)
        if not dev.caught_up_at and dev.ready_seqs:
            self._check_caught_up(dev, now)
        return True

    def _check_caught_up(self, dev: Device, now: float) -> None:
        if not dev.caught_up_at and dev.ready.is_set() and all(
                dev.cursors.get(c, 0) >= s for c, s in dev.ready_seqs.items() if c in dev.base):
            dev.caught_up_at = now

    def _ack(self, dev: Device, ws, conversation: int) -> None:
        if self.ack_ms <= 0:
            self._send(ws, {"type": "ack", "conversation": conversation, "seq": dev.cursors[conversation]})
            return
        dev.ack_dirty.add(conversation)
        if not dev.ack_scheduled:
            dev.ack_scheduled = True
            asyncio.get_running_loop().call_later(self.ack_ms / 1000, self._flush_acks, dev, ws)

    def _flush_acks(self, dev: Device, ws) -> None:
        dev.ack_scheduled = False
        for conversation in dev.ack_dirty:
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
        dev.pending[cmid] = (text, time.monotonic())
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
                for cmid, (text, tried) in list(dev.pending.items()):
                    if now - tried > after:
                        dev.pending[cmid] = (text, now)
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


# --- the relay baseline ---------------------------------------------------------------------------

@dataclass
class RelaySocket:
    index: int
    room: int
    ws: Any = None
    reader: asyncio.Task | None = None
    last_from: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    reordered: int = 0
    connected_at: float = 0.0


class RelayPool:
    """Sockets of the Channels tutorial's relay: one room per conversation, no auth, no replay."""

    def __init__(self, urls: list[str], recorder: Recorder) -> None:
        self.urls = urls
        self.recorder = recorder
        self.sockets: list[RelaySocket] = []
        self.counters: Counter = Counter()
        self.sent_per_room: Counter = Counter()

    async def connect(self, sockets: list[RelaySocket], parallel: int = 50) -> float:
        start = time.monotonic()
        gate = asyncio.Semaphore(parallel)

        async def one(sock: RelaySocket) -> None:
            async with gate:
                url = f"{self.urls[sock.index % len(self.urls)]}/ws/relay/{sock.room}/"
                for attempt in range(100):
                    try:
                        sock.ws = await connect(url, max_size=None, compression=None, ping_interval=None,
                                                open_timeout=30, close_timeout=2)
                        break
                    except Exception:  # noqa: BLE001
                        await asyncio.sleep(min(5, 0.2 * 2 ** min(attempt, 5)) * random.uniform(0.5, 1))
                sock.connected_at = time.time()
                sock.reader = asyncio.get_running_loop().create_task(self._read(sock))

        await asyncio.gather(*(one(s) for s in sockets))
        self.sockets = sorted({id(s): s for s in self.sockets + sockets}.values(), key=lambda s: s.index)
        return time.monotonic() - start

    async def _read(self, sock: RelaySocket) -> None:
        try:
            async for raw in sock.ws:
                now = time.time()
                text = json.loads(raw)["message"]
                if text.startswith("typing|"):
                    continue
                cmid, body = text.split(" ", 1)
                if cmid in sock.seen:
                    sock.duplicates += 1
                    continue
                sock.seen.add(cmid)
                sender, n = cmid.rsplit(".", 1)
                if int(n) <= sock.last_from.get(sender, 0):
                    sock.reordered += 1
                sock.last_from[sender] = max(int(n), sock.last_from.get(sender, 0))
                self.recorder.delivered(body, sender == f"s{sock.index}", now)
        except Exception:  # noqa: BLE001 - closed or killed
            pass

    def send(self, sock: RelaySocket, phase: Phase, pad: str, members: int) -> None:
        now = time.time()
        self.counters[sock.index] += 1
        cmid = f"s{sock.index}.{self.counters[sock.index]}"
        text = json.dumps({"message": f"{cmid} {self.recorder.body(phase.label, now, pad)}"})
        phase.sent += 1
        phase.expected += members
        if not phase.first_send:
            phase.first_send = now
        phase.last_send = now
        if sock.ws is not None:
            asyncio.get_running_loop().create_task(Pool._write(sock.ws, text))

    def typing(self, sock: RelaySocket) -> None:
        if sock.ws is not None:
            asyncio.get_running_loop().create_task(Pool._write(sock.ws, json.dumps({"message": "typing|"})))

    def drop(self, sockets: list[RelaySocket]) -> None:
        for sock in sockets:
            if sock.ws is not None:
                sock.ws.transport.abort()
            if sock.reader is not None:
                sock.reader.cancel()
            sock.ws = None

    async def close(self) -> None:
        async def one(sock: RelaySocket) -> None:
            if sock.ws is not None:
                try:
                    await asyncio.wait_for(sock.ws.close(), 3)
                except Exception:  # noqa: BLE001
                    pass
            if sock.reader is not None:
                sock.reader.cancel()
        await asyncio.gather(*(one(s) for s in self.sockets))

    def check(self) -> dict[str, int]:
        return {"duplicates": sum(s.duplicates for s in self.sockets),
                "reordered": sum(s.reordered for s in self.sockets)}


def group_by(items, key) -> dict[Any, list]:
    out: dict[Any, list] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return out
