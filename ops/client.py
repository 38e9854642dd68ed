"""A reference Parley client in Python: the protocol, reconnects with backoff and jitter,
resumes from cursors and dedupes by seq. Tests and benchmarks drive Parley through it.

    client = ParleyClient(["http://127.0.0.1:8000"], token=TOKEN, device_id=DEVICE)
    task = asyncio.create_task(client.run())
    await client.ready.wait()
    message = await client.send(conversation_id, "hello")

Acks are cumulative (``ack`` N: this device holds everything up to N), so the client acks on
a short timer, not per frame: at most one ``ack`` per conversation every ``ack_interval``
seconds (100 ms), carrying the cursor then: a frame that arrives while an ack is due rides on
that ack. A connection that ends with acks due leaves them to the next hello's cursors.

What it checks, per connection (``violations`` collects any breach): the message frames of a
conversation strictly increase in seq with no gap from the point the connection resumed
from, and no seq is shown twice across connections (``shown``). With ``follow_changes`` it
follows the change stream (CONTRACT v1.1) the same way: change numbers strictly increase
with no gap per connection, each is applied once across connections (``changes_applied``),
and ``messages`` holds each message at its newest ``version``.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import websockets
from websockets.asyncio.client import ClientConnection


@dataclass
class Delivery:
    conversation: int
    seq: int
    message: dict[str, Any]
    received_at: float


@dataclass
class ParleyClient:
    base_urls: list[str]
    token: str
    device_id: str
    ack: bool = True
    ack_interval: float = 0.1  # seconds; acks are cumulative, one per conversation per interval
    on_message: Callable[[Delivery], None] | None = None
    backoff_base: float = 0.2
    backoff_cap: float = 5.0

    cursors: dict[int, int] = field(default_factory=dict)
    shown: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    violations: list[str] = field(default_factory=list)
    connections: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_ready: dict[str, int] = field(default_factory=dict)
    frames: list[dict[str, Any]] = field(default_factory=list)
    keep_frames: bool = False
    follow_changes: bool = False
    change_cursors: dict[int, int] = field(default_factory=dict)
    changes_applied: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> newest version seen

    def __post_init__(self) -> None:
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._stopping = False
        self._url_index = 0
        self._held: dict[int, int] = {}  # per connection: resume point + what arrived since
        self._changes_held: dict[int, int] = {}  # the same for change numbers
        self._reconnect_after: float | None = None  # a restarting gateway's hint, in seconds
        self._ack_due: set[int] = set()  # conversations whose cursor moved since their last ack
        self._ack_timer: asyncio.TimerHandle | None = None
        self.acks_sent = 0

    # --- public -------------------------------------------------------------------------------
    async def run(self) -> None:
        attempt = 0
        while not self._stopping:
            base = self.base_urls[self._url_index % len(self.base_urls)]
            try:
                await self._session(base)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any failure: back off and resume from cursors
                pass
            if self._stopping:
                break
            self.ready.clear()
            self._url_index += 1  # try the next gateway
            if self._reconnect_after is not None:
                # The gateway is restarting and drew this client's turn (1012 + a hint).
                delay, self._reconnect_after = self._reconnect_after, None
                await asyncio.sleep(delay)
                continue
            attempt += 1
            delay = min(self.backoff_cap, self.backoff_base * 2 ** min(attempt, 6))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter spreads a reconnect storm

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()

    async def send(self, conversation: int, body: str, client_msg_id: str | None = None,
                   timeout: float = 30.0) -> dict[str, Any]:
        """Send until the server confirms; retries across reconnects with the same client_msg_id."""
        client_msg_id = client_msg_id or uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.ready.wait()
            ws = self._ws
            if ws is None:  # the connection ended after it was ready: wait for the next one
                await asyncio.sleep(0.1)
                continue
            future = asyncio.get_running_loop().create_future()
            self._pending[client_msg_id] = future
            try:
                await ws.send(json.dumps({"type": "send", "conversation": conversation,
                                          "client_msg_id": client_msg_id, "body": body}))
                reply = await asyncio.wait_for(future, timeout=5)
            except (asyncio.TimeoutError, websockets.ConnectionClosed):
                await asyncio.sleep(0.1)
                continue
            finally:
                self._pending.pop(client_msg_id, None)
            if reply["type"] == "send.error":
                if reply["code"] in ("unavailable", "rate_limited"):
                    await asyncio.sleep(reply.get("retry_after_ms", 200) / 1000)
                    continue
                raise RuntimeError(f"send failed: {reply}")
            return reply
        raise TimeoutError(f"send {client_msg_id} not confirmed in {timeout}s")

    def missing(self, conversation: int, last_seq: int) -> list[int]:
        have = set(self.shown.get(conversation, []))
        return [s for s in range(1, last_seq + 1) if s not in have]

    # --- one connection -----------------------------------------------------------------------
    def _ticket(self, base: str) -> str:
        request = urllib.request.Request(
            f"{base}/api/v1/ws-ticket", method="POST", data=b"{}",
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["ticket"]

    async def _session(self, base: str) -> None:
        ticket = await asyncio.to_thread(self._ticket, base)
        ws_base = base.replace("http://", "ws://").replace("https://", "wss://")
        async with websockets.connect(f"{ws_base}/ws/v1/?device={self.device_id}&ticket={ticket}",
                                      max_size=None, ping_interval=20, ping_timeout=20) as ws:
            self._ws = ws
            self.connections += 1
            self._held = dict(self.cursors)
            self._changes_held = dict(self.change_cursors)
            hello: dict[str, Any] = {"type": "hello", "cursors": {str(k): v for k, v in self.cursors.items()},
                                     "batch_receipts": True}  # a "receipts" frame per window, not one per member
            if self.follow_changes:
                hello["changes"] = {str(k): v for k, v in self.change_cursors.items()}
            await ws.send(json.dumps(hello))
            try:
                async for raw in ws:
                    await self._on_frame(ws, json.loads(raw))
            finally:
                self._cancel_acks()  # the next hello carries the cursors
        self._ws = None

    async def _on_frame(self, ws, frame: dict[str, Any]) -> None:
        if self.keep_frames:
            self.frames.append(frame)
        kind = frame["type"]
        if kind == "message":
            self._accept(frame["message"])
            await self._ack(ws, frame["message"]["conversation"])
        elif kind == "messages":
            for index, message in enumerate(frame["messages"]):
                self._accept(message, first_of_page=index == 0)
            conversation = frame["conversation"]
            await self._ack(ws, conversation)
            if frame["has_more"]:
                await ws.send(json.dumps({"type": "replay", "conversation": conversation,
                                          "after_seq": self.cursors.get(conversation, 0)}))
        elif kind == "change":
            self._accept_change(frame)
        elif kind == "changes":
            for record in frame["changes"]:
                self._accept_change(record)
            conversation = frame["conversation"]
            if frame["has_more"]:
                await ws.send(json.dumps({"type": "replay_changes", "conversation": conversation,
                                          "after": self.change_cursors.get(conversation, 0)}))
        elif kind == "ready":
            self.last_ready = frame["conversations"]
            # A conversation we gave no cursor for and got no page of: the server resumed at
            # its last_seq (the device is new, and the user had read it all elsewhere).
            for conversation, last_seq in frame["conversations"].items():
                self._adopt_resume_point(int(conversation), last_seq)
            for conversation, last_change in frame.get("changes", {}).items():
                self._adopt_change_point(int(conversation), last_change)
            self.ready.set()
        elif kind == "conversation.joined":
            # Followed live from its last_seq on (CONTRACT); its history is a REST read.
            conversation = frame["conversation"]
            self._adopt_resume_point(conversation["id"], conversation.get("last_seq", 0))
            self._adopt_change_point(conversation["id"], conversation.get("last_change", 0))
        elif kind == "reconnect":
            self._reconnect_after = frame["after_ms"] / 1000
        elif kind in ("send.ok", "send.error"):
            future = self._pending.get(frame["client_msg_id"])
            if future is not None and not future.done():
                future.set_result(frame)

    def _adopt_resume_point(self, conversation: int, seq: int) -> None:
        """Where the server resumed a conversation we sent no cursor for: nothing before it is
        owed to this device. Conversations with a cursor are held to it strictly."""
        if conversation in self._held:
            return
        self._held[conversation] = seq
        if seq > self.cursors.get(conversation, 0):
            self.cursors[conversation] = seq

    def _accept(self, message: dict[str, Any], *, first_of_page: bool = False) -> None:
        conversation, seq = message["conversation"], message["seq"]
        if first_of_page and not self.ready.is_set():
            self._adopt_resume_point(conversation, seq - 1)  # hello's page starts after it
        held = self._held.get(conversation, self.cursors.get(conversation, 0))
        if seq != held + 1:
            self.violations.append(f"conversation {conversation}: got seq {seq} after {held} on one connection")
        self._held[conversation] = max(held, seq)
        if seq <= self.cursors.get(conversation, 0):
            return  # already shown: dedupe by seq
        if seq != self.cursors.get(conversation, 0) + 1:
            return  # never advance the cursor past a gap
        self.cursors[conversation] = seq
        self.shown[conversation].append(seq)
        if "version" in message:
            self._keep(message)
        if self.on_message is not None:
            self.on_message(Delivery(conversation, seq, message, time.time()))

    def _adopt_change_point(self, conversation: int, change: int) -> None:
        if conversation in self._changes_held:
            return
        self._changes_held[conversation] = change
        # Kept even at 0: a conversation named in hello's changes is replayed from there.
        self.change_cursors[conversation] = max(change, self.change_cursors.get(conversation, 0))

    def _keep(self, message: dict[str, Any]) -> None:
        """Keep the newest version of a message (a page read earlier may arrive later)."""
        held = self.messages.get(message["id"])
        if held is None or message["version"] >= held["version"]:
            self.messages[message["id"]] = message

    def _accept_change(self, record: dict[str, Any]) -> None:
        conversation, change = record["conversation"], record["change"]
        held = self._changes_held.get(conversation, self.change_cursors.get(conversation, 0))
        if change != held + 1:
            self.violations.append(f"conversation {conversation}: got change {change} after {held} on one connection")
        self._changes_held[conversation] = max(held, change)
        if change != self.change_cursors.get(conversation, 0) + 1:
            return  # already applied (or past a gap: never advance over one)
        self.change_cursors[conversation] = change
        self.changes_applied[conversation].append(change)
        self._keep(record["message"])

    async def _ack(self, ws, conversation: int) -> None:
        """Ack on the timer: the conversation's cursor goes out within ``ack_interval``."""
        if not self.ack:
            return
        self._ack_due.add(conversation)
        if self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(self.ack_interval, self._flush_acks, ws)

    def _flush_acks(self, ws) -> None:
        self._ack_timer = None
        due, self._ack_due = self._ack_due, set()
        for conversation in due:
            self.acks_sent += 1
            frame = json.dumps({"type": "ack", "conversation": conversation, "seq": self.cursors.get(conversation, 0)})
            asyncio.get_running_loop().create_task(self._write(ws, frame))

    @staticmethod
    async def _write(ws, text: str) -> None:
        try:
            await ws.send(text)
        except websockets.ConnectionClosed:
            pass  # the next hello carries the cursor

    def _cancel_acks(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self._ack_due.clear()
