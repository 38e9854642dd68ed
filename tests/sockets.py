"""In-process socket tests: WebsocketCommunicator against the real ASGI application."""
from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator


class Socket:
    """A test client for one device: frames in, frames out, with helpers for the protocol."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, frame: dict) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def recv(self, timeout: float = 5) -> dict:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def recv_type(self, *types: str, timeout: float = 5) -> dict:
        """The next frame of one of ``types``, skipping others (receipts, presence, typing)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {types} frame within {timeout}s")
            frame = await self.recv(timeout=remaining)
            if frame["type"] in types:
                return frame

    async def recv_messages(self, n: int, timeout: float = 5) -> list[dict]:
        """The next ``n`` live messages, whether they came one per ``message`` frame or several
        to a ``messages`` frame (a socket with several queued gets them as one run)."""
        got: list[dict] = []
        while len(got) < n:
            frame = await self.recv_type("message", "messages", timeout=timeout)
            got += [frame["message"]] if frame["type"] == "message" else frame["messages"]
        return got

    async def nothing(self, timeout: float = 0.3) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def hello(self, cursors: dict | None = None, **options: object) -> tuple[list[dict], dict]:
        """Send hello (``options``: more of its fields); return the replay pages and the ready frame."""
        await self.send({"type": "hello", "cursors": {str(k): v for k, v in (cursors or {}).items()}, **options})
        pages = []
        while True:
            frame = await self.recv_type("messages", "ready")
            if frame["type"] == "ready":
                return pages, frame
            pages.append(frame)

    async def still_open(self, quiet: float = 0.5) -> bool:
        """No close frame among what arrives until the socket has been quiet for ``quiet`` s
        (frames still on their way, a sender's own messages say, are skipped)."""
        while not await self.communicator.receive_nothing(timeout=quiet):  # (a receive that times out ends the app)
            if (await self.communicator.receive_output())["type"] == "websocket.close":
                return False
        return True

    async def closed_with(self, timeout: float = 3) -> int:
        """The code the server closes the socket with (frames before the close are skipped)."""
        while True:
            output = await self.communicator.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                return output["code"]

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
async def open_socket():
    """Open sockets to the in-process ASGI app; at teardown close them and stop the gateway
    runtime of this test's event loop (the next test runs in a new loop, with a new runtime)."""
    from gateway import runtime

    opened: list[Socket] = []

    from chatproject.asgi import application
    from messaging.tickets import issue_ticket

    async def open_(user, device, *, hello: bool = True, origin: str | None = None, ticket: str | None = "auto",
                    cursors: dict | None = None, cookie: str | None = None) -> Socket:
        if ticket == "auto":
            ticket, _ = await database_sync_to_async(issue_ticket)(user_id=user.pk)
        query = f"device={device.pk}" + (f"&ticket={ticket}" if ticket else "")
        # ws://localhost:8000, as a browser on this site's pages would reach it.
        headers = [(b"host", b"localhost:8000")] + ([(b"origin", origin.encode())] if origin else [])
        headers += [(b"cookie", cookie.encode())] if cookie else []
        communicator = WebsocketCommunicator(application, f"/ws/v1/?{query}", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        socket = Socket(communicator)
        opened.append(socket)
        if hello:
            await socket.hello(cursors)
        return socket

    yield open_
    for socket in opened:
        try:
            await socket.close()
        except Exception:  # noqa: BLE001 - already closed by the server or the test
            pass
    gateway = runtime.running(asyncio.get_running_loop())
    if gateway is not None:
        await gateway.stop()
