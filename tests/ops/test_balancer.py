"""The stack's load balancer (ops.balancer): round-robin over real backends, a dead backend
skipped without a failed connection, health checks, and a WebSocket relayed through it."""
from __future__ import annotations

import asyncio
import socket

import pytest
import websockets

from ops.balancer import Balancer, parse_address


class NamedBackend:
    """A tiny HTTP server on a free port that answers every request with its name, and
    /healthz with 200 or 503 as told."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            if request.startswith(b"GET /healthz "):
                status, body = ("200 OK", b"ok") if self.healthy else ("503 Unavailable", b"sick")
            else:
                status, body = "200 OK", self.name.encode()
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def free_port() -> int:
    """A port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def get(port: int, path: str = "/") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data.split(b"\r\n\r\n", 1)[1]


@pytest.fixture
async def backends():
    started = [NamedBackend("one"), NamedBackend("two")]
    for backend in started:
        await backend.start()
    yield started
    for backend in started:
        if backend.server.is_serving():
            await backend.stop()


async def start_balancer(ports: list[int], **options) -> Balancer:
    balancer = Balancer(("127.0.0.1", 0), [("127.0.0.1", port) for port in ports], **options)
    await balancer.start()
    return balancer


async def test_round_robin_over_two_backends(backends):
    balancer = await start_balancer([b.port for b in backends], health_interval=0.2)
    try:
        answers = [await get(balancer.port) for _ in range(6)]
    finally:
        await balancer.close()
    assert answers == [b"one", b"two"] * 3
    assert [b.served for b in balancer.backends] == [3, 3]


async def test_a_refusing_backend_is_skipped_without_a_failed_connection(backends):
    # Health checks off: only the failed connect can tell the balancer the backend is gone.
    dead = free_port()
    balancer = await start_balancer([dead, backends[1].port], health_path="")
    try:
        answers = [await get(balancer.port) for _ in range(4)]
        assert answers == [b"two"] * 4
        assert not balancer.backends[0].healthy
    finally:
        await balancer.close()


async def test_a_backend_that_dies_is_skipped_and_comes_back(backends):
    one, two = backends
    balancer = await start_balancer([one.port, two.port], health_interval=0.1)
    try:
        await one.stop()  # like a SIGKILLed gateway: its port now refuses
        assert [await get(balancer.port) for _ in range(4)] == [b"two"] * 4
        await one.start(one.port)  # restarted on the same port: the health check brings it back
        for _ in range(50):
            if balancer.backends[0].healthy:
                break
            await asyncio.sleep(0.05)
        assert sorted([await get(balancer.port) for _ in range(4)]) == [b"one", b"one", b"two", b"two"]
    finally:
        await balancer.close()


async def test_the_health_check_takes_out_a_backend_that_accepts_but_fails(backends):
    one, two = backends
    one.healthy = False
    balancer = await start_balancer([one.port, two.port], health_interval=0.1, health_fall=1)
    try:
        assert not balancer.backends[0].healthy  # checked before the first client
        assert [await get(balancer.port) for _ in range(4)] == [b"two"] * 4
    finally:
        await balancer.close()


async def test_one_failed_health_check_does_not_take_a_backend_out_but_several_in_a_row_do(backends):
    """A gateway that answers one check late under load must not flap in and out."""
    one, two = backends
    one.healthy = False
    balancer = await start_balancer([one.port, two.port], health_interval=3600, health_fall=3)
    try:
        assert balancer.backends[0].healthy  # one failure (the check before the first client)
        await balancer.check_health()
        assert balancer.backends[0].healthy
        await balancer.check_health()
        assert not balancer.backends[0].healthy  # the third in a row
        one.healthy = True
        await balancer.check_health()
        assert balancer.backends[0].healthy and balancer.backends[0].failed_checks == 0
    finally:
        await balancer.close()


async def test_every_backend_down_still_tries_them(backends):
    # Fail open: a health check that is wrong about every backend must not cut everyone off.
    for backend in backends:
        backend.healthy = False
    balancer = await start_balancer([b.port for b in backends], health_interval=10, health_fall=1)
    try:
        assert not any(b.healthy for b in balancer.backends)
        assert await get(balancer.port) in (b"one", b"two")
    finally:
        await balancer.close()


async def test_no_backend_at_all_closes_the_client():
    balancer = await start_balancer([free_port(), free_port()], health_path="")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", balancer.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await balancer.close()


async def test_a_websocket_through_the_balancer():
    seen_ports = []

    async def echo(ws):
        seen_ports.append(ws.local_address[1])
        async for message in ws:
            await ws.send(f"echo {message}")

    servers = [await websockets.serve(echo, "127.0.0.1", 0) for _ in range(2)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    balancer = await start_balancer(ports, health_path="")
    try:
        for _ in range(2):
            async with websockets.connect(f"ws://127.0.0.1:{balancer.port}/ws/v1/") as ws:
                for i in range(3):
                    await ws.send(f"m{i}")
                    assert await asyncio.wait_for(ws.recv(), 5) == f"echo m{i}"
                big = "x" * 1_000_000  # larger than any socket buffer: flow control relays it whole
                await ws.send(big)
                assert await asyncio.wait_for(ws.recv(), 10) == f"echo {big}"
        for _ in range(100):  # both relays end once their sockets are closed
            if not balancer._relays:
                break
            await asyncio.sleep(0.02)
        assert not balancer._relays
        assert [b.connections for b in balancer.backends] == [0, 0]
    finally:
        await balancer.close()
        for server in servers:
            server.close()
            await server.wait_closed()
    assert sorted(seen_ports) == sorted(ports)  # one socket on each backend


def test_parse_address():
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address(":8001") == ("127.0.0.1", 8001)
    assert parse_address("[::1]:8002") == ("::1", 8002)
    with pytest.raises(ValueError):
        parse_address("localhost")
