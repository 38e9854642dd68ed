"""A small TCP round-robin load balancer for the production-like stack on one machine.

    python -m ops.balancer --listen 127.0.0.1:8080 \\
        --backend 127.0.0.1:8001 --backend 127.0.0.1:8002 --health-path /readyz

``make stack`` (Procfile.stack) puts it in front of the two daphne gateways. It is not meant
for production; there, use nginx, HAProxy or a cloud load balancer (docs/operations.md).

Why a module of our own instead of a well-kept proxy. The stack must start with one command
on a developer's machine and in CI, installing only into ``.venv``: HAProxy and nginx come
from the system's package manager (root), and the one PyPI-packaged server (Caddy, through a
wrapper that ships its Go binary) would be a 40 MB third runtime for something this stack
needs about 200 lines of asyncio for. What the stack needs is narrow:

- **Round-robin per connection** over the gateways. Parley's gateways are stateless (a
  client resumes from its cursors wherever it lands), so no stickiness and no HTTP routing.
- **TCP-level proxying**: bytes are relayed unchanged, so HTTP keep-alive, WebSocket
  upgrades and long-lived sockets all work without the proxy understanding them. It adds no
  ``X-Forwarded-For``; on one machine every client is 127.0.0.1 anyway.
- **Skipping a dead gateway**: a backend that refuses (or does not accept within
  ``--connect-timeout``) is marked down at once and the next one is tried for the same
  client, so a SIGKILLed gateway costs no failed connection once its port is closed. An
  active **health check** (``GET --health-path`` every ``--health-interval`` seconds, up on
  a 200) takes a gateway out that still accepts but cannot serve (``--health-fall`` failures
  in a row, so one slow answer under load does not make it flap), and puts a recovered one
  back. When every backend is down the balancer still tries them all (fail open) rather
  than refuse outright: the health check may be the thing that is wrong.

Connections already relayed to a gateway that dies are closed on the client's side; Parley
clients reconnect (the reference client with backoff, or after a 1012 hint) and land on a
live gateway.

The relay uses asyncio protocols and transports, not streams: each chunk is handed from
one transport to the other in ``data_received`` with no task switch, and flow control is
the transports' own (a side whose write buffer fills pauses reading on the other side), so
a slow reader cannot make the balancer buffer without bound. Half-closes are relayed too.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import signal
import time
from dataclasses import dataclass, field

logger = logging.getLogger("parley.balancer")


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (or ``:port``, meaning 127.0.0.1) as a pair."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    return (host.strip("[]") or "127.0.0.1", int(port))


@dataclass
class Backend:
    host: str
    port: int
    healthy: bool = True
    since: float = field(default_factory=time.monotonic)
    reason: str = ""
    failed_checks: int = 0  # health checks failed in a row
    connections: int = 0   # open relayed connections
    served: int = 0        # connections relayed since start

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def mark(self, healthy: bool, reason: str = "") -> None:
        if healthy != self.healthy:
            self.healthy, self.since, self.reason = healthy, time.monotonic(), reason
            if healthy:
                logger.warning("backend %s is up again", self.name)
            else:
                logger.warning("backend %s is down: %s", self.name, reason)


class _Side(asyncio.Protocol):
    """One end of a relayed connection; ``peer`` is the other end."""

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.eof = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _peer_transport(self) -> asyncio.Transport | None:
        peer = self.peer
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return None
        return peer.transport

    def data_received(self, data: bytes) -> None:
        transport = self._peer_transport()
        if transport is not None:
            transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.closed or peer.transport is None:
            return False
        if peer.eof:  # both directions finished: nothing more can flow
            self.relay.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # keep reading the answer coming back the other way
        self.relay.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.relay.close()

    # Flow control: our transport's write buffer is full, so stop reading the other side.
    def pause_writing(self) -> None:
        transport = self._peer_transport()
        if transport is not None:
            transport.pause_reading()

    def resume_writing(self) -> None:
        transport = self._peer_transport()
        if transport is not None:
            transport.resume_reading()


class _Relay:
    """A client connection and, once connected, its backend connection."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.client = _ClientSide(self)
        self.backend_side: _Side | None = None
        self.backend: Backend | None = None
        self.done = False

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        for side in (self.client, self.backend_side):
            if side is not None and side.transport is not None and not side.closed:
                side.transport.close()  # flushes what is buffered, then closes
        if self.backend is not None:
            self.backend.connections -= 1
        self.balancer._relays.discard(self)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for backend in self.balancer.candidates():
            if self.done:
                return
            side = _Side(self)
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: side, backend.host, backend.port),
                    self.balancer.connect_timeout)
            except (OSError, asyncio.TimeoutError) as error:
                backend.mark(False, f"connect failed: {error!r}")
                continue
            if self.done:  # the client left while we were connecting
                side.transport.close()
                return
            if self.balancer.health_path is None:
                backend.mark(True)  # no active check: an accepted connection is the only news
            self.backend, self.backend_side = backend, side
            backend.connections += 1
            backend.served += 1
            side.peer, self.client.peer = self.client, side
            assert self.client.transport is not None and side.transport is not None  # both connected
            self.client.transport.resume_reading()
            if self.client.eof:  # the client half-closed before we were connected
                side.transport.write_eof()
            return
        logger.error("no backend accepted a connection; closing the client's")
        self.close()


class _ClientSide(_Side):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)  # a TCP server's transports read and write
        transport.pause_reading()  # nothing to relay to until a backend accepts
        self.relay.balancer._relays.add(self.relay)
        task = asyncio.get_running_loop().create_task(self.relay.connect())
        self.relay.balancer._tasks.add(task)
        task.add_done_callback(self.relay.balancer._tasks.discard)

    def eof_received(self) -> bool:
        if self.peer is None:  # not connected yet: remember it and pass it on later
            self.eof = True
            return True
        return super().eof_received()


class Balancer:
    def __init__(self, listen: tuple[str, int], backends: list[tuple[str, int]], *,
                 health_path: str | None = "/healthz", health_interval: float = 2.0,
                 connect_timeout: float = 2.0, health_timeout: float = 3.0, health_fall: int = 3) -> None:
        if not backends:
            raise ValueError("at least one backend is needed")
        self.listen = listen
        self.backends = [Backend(host, port) for host, port in backends]
        self.health_path = health_path or None
        self.health_interval = health_interval
        self.connect_timeout = connect_timeout
        self.health_timeout = health_timeout
        self.health_fall = max(1, health_fall)
        self._turn = itertools.count()
        self._server: asyncio.base_events.Server | None = None
        self._health_task: asyncio.Task | None = None
        self._relays: set[_Relay] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0)."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def candidates(self) -> list[Backend]:
        """Backends to try for the next connection: the healthy ones in round-robin order,
        then the others (fail open)."""
        n = len(self.backends)
        start = next(self._turn) % n
        rotated = self.backends[start:] + self.backends[:start]
        return [b for b in rotated if b.healthy] + [b for b in rotated if not b.healthy]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Relay(self).client, self.listen[0], self.listen[1], reuse_address=True, backlog=1024)
        if self.health_path and self.health_interval > 0:
            await self.check_health()  # know the state before the first client
            self._health_task = loop.create_task(self._health_loop())
        logger.warning("balancing %s:%d over %s (health check: %s)", self.listen[0], self.port,
                       ", ".join(b.name for b in self.backends),
                       f"GET {self.health_path} every {self.health_interval:g}s" if self._health_task
                       else "off, connect failures only")

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
        if self._server is not None:
            self._server.close()
        for relay in list(self._relays):
            relay.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await self.check_health()
            except Exception:  # never let the checker die
                logger.exception("health check failed")

    async def check_health(self) -> None:
        await asyncio.gather(*(self._probe(backend) for backend in self.backends))

    async def _probe(self, backend: Backend) -> None:
        """``GET health_path``: up on a 200 within the timeout; down after ``fall`` failures in a
        row, so a gateway that answers late once under load is not taken out (and put back,
        and taken out: flapping moves every new socket onto the other gateway)."""
        timeout = self.health_timeout
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(backend.host, backend.port), timeout)
            writer.write(f"GET {self.health_path} HTTP/1.1\r\nHost: {backend.host}\r\n"
                         "User-Agent: parley-balancer\r\nConnection: close\r\n\r\n".encode())
            status_line = await asyncio.wait_for(reader.readline(), timeout)
            parts = status_line.split()
            if len(parts) >= 2 and parts[1] == b"200":
                backend.failed_checks = 0
                backend.mark(True)
            else:
                self._failed(backend, f"GET {self.health_path}: "
                             f"{status_line.decode(errors='replace').strip() or 'no answer'}")
        except (OSError, asyncio.TimeoutError) as error:
            self._failed(backend, f"GET {self.health_path}: {error!r}")
        finally:
            if writer is not None:
                writer.close()


    def _failed(self, backend: Backend, reason: str) -> None:
        backend.failed_checks += 1
        if backend.failed_checks >= self.health_fall:
            backend.mark(False, f"{reason} ({backend.failed_checks} checks in a row)")


async def serve(balancer: Balancer) -> None:
    await balancer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await balancer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="TCP round-robin load balancer for Parley's local stack.")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="host:port to accept on (default %(default)s)")
    parser.add_argument("--backend", action="append", required=True, metavar="HOST:PORT",
                        help="a gateway; repeat for each")
    parser.add_argument("--health-path", default="/healthz",
                        help="HTTP path that answers 200 on a healthy backend; '' checks nothing "
                             "but connect failures (default %(default)s)")
    parser.add_argument("--health-interval", type=float, default=2.0, help="seconds between checks")
    parser.add_argument("--connect-timeout", type=float, default=2.0, help="seconds to wait for a backend")
    parser.add_argument("--health-timeout", type=float, default=3.0, help="seconds a health check may take")
    parser.add_argument("--health-fall", type=int, default=3,
                        help="failed health checks in a row before a backend is taken out (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    balancer = Balancer(parse_address(args.listen), [parse_address(b) for b in args.backend],
                        health_path=args.health_path, health_interval=args.health_interval,
                        connect_timeout=args.connect_timeout, health_timeout=args.health_timeout,
                        health_fall=args.health_fall)
    asyncio.run(serve(balancer))


if __name__ == "__main__":
    main()
