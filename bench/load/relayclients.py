"""Sockets of the Channels tutorial's relay (bench/relay): the baseline's clients.

One room per conversation, no auth, no seq, no replay. A frame is ``{"message": "<cmid> <body>"}``
with ``cmid = s<socket>.<n>``; the body is the recorder's (bench/load/recorder.py), so a relay
delivery is timed and attributed exactly as a Parley one. A *duplicate* is a cmid a socket
already had; a *reordered* delivery is judged by the recorder (per sender, or per socket).
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect

from bench.load.clients import Pool
from bench.load.recorder import Phase, Recorder


@dataclass
class RelaySocket:
    index: int
    room: int
    ws: Any = None
    reader: asyncio.Task | None = None
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    reordered: int = 0
    connected_at: float = 0.0


class RelayPool:
    """Sockets of the Channels tutorial's relay: one room per conversation, no auth, no replay."""

    def __init__(self, urls: list[str], recorder: Recorder, path: str = "relay") -> None:
        self.urls = urls
        self.recorder = recorder
        self.path = path   # "relay", or "relay-persist": the relay storing each message first
        self.sockets: list[RelaySocket] = []
        self.counters: Counter = Counter()
        self.frames = 0

    async def connect(self, sockets: list[RelaySocket], parallel: int = 50) -> float:
        start = time.monotonic()
        gate = asyncio.Semaphore(parallel)

        async def one(sock: RelaySocket) -> None:
            async with gate:
                url = f"{self.urls[sock.index % len(self.urls)]}/ws/{self.path}/{sock.room}/"
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
                self.frames += 1
                text = json.loads(raw)["message"]
                if text.startswith("typing|"):
                    continue
                cmid, body = text.split(" ", 1)
                if cmid in sock.seen:
                    sock.duplicates += 1
                    self.recorder.flag(body, "duplicates")
                    continue
                sock.seen.add(cmid)
                sender = cmid.rsplit(".", 1)[0]
                if self.recorder.delivered(body, sender == f"s{sock.index}", now, sock.index, sender):
                    sock.reordered += 1
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
