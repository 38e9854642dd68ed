"""Daphne as Parley runs it: ``parley-gateway`` (or ``python -m gateway``; gateway.launch picks the event loop
first) takes daphne's arguments and serves the same
ASGI application, with what a chat gateway needs at its limits and on a restart (docs/operations.md,
"Graceful restarts"):

* **close code 1012** ("Service Restart", registered by IANA for servers, and the contract's
  restart code). autobahn lets an application close only with 1000 or 3000-4999, and daphne
  hands the ASGI close code to that check; :class:`GatewayWebSocketProtocol` sends 1012
  through autobahn's frame-level close instead, the call autobahn uses for its own protocol
  errors. Every other code takes daphne's path unchanged.
* **a drain before the reactor stops** (SIGTERM): the process's runtime asks every socket to
  come back elsewhere, spread out (gateway.runtime.GatewayRuntime.drain), within the grace
  period, before daphne cancels the application instances;
* **frame limits set on purpose**: a WebSocket message or frame over
  ``PARLEY_WS_MAX_FRAME_BYTES`` (64 KiB) from a client closes the connection with 1009, as the
  contract says, with a closing handshake (autobahn's default drops the TCP connection, which
  a client sees as 1006); what the server sends has no such limit (a replay page of 200 long
  messages is megabytes). daphne's own flags still win when given on the command line;
* **a listen backlog** of ``PARLEY_GATEWAY_LISTEN_BACKLOG`` instead of Twisted's 50, so a
  burst of new connections waits to be accepted instead of being reset;
* **a bounded shutdown**: the process exits within ``PARLEY_GATEWAY_SHUTDOWN_TIMEOUT_SECONDS``
  of SIGTERM, whatever its requests are waiting on (:meth:`GatewayServer.kill_all_applications`,
  :func:`_exit_by`).

Why the bound needs its own code (docs/operations.md, "Restarts"). A REST request runs its
view on a thread, and whatever that thread does with the channel layer (the send's
after-commit publish through messaging.layer, Django's own sync-to-async middleware hops
through ``async_to_sync``) hands a coroutine to *this process's event loop* and blocks the
thread until the loop has run it. Daphne's own shutdown cancels every application instance
and waits for them with no bound; Django's handler cannot finish until its view's thread
returns; so a thread waiting on an unanswering Redis kept the reactor from ever stopping.
And once the reactor has stopped, the loop runs nothing more: a thread that still hands it
a coroutine waits forever, and Python's exit joins every executor thread, so the
process never exits. Hence: in-flight work may finish on its own within the grace period
(the loop still runs, so its publishes complete), then the listeners close so nothing new
starts, what remains is cancelled, and a watchdog ends the process at the bound, abandoning
whatever a thread is still blocked in. Nothing is lost by abandoning: a send is either
committed (PostgreSQL has it; its lost doorbell is repaired by gap fill and replay) or
rolled back when its connection drops (the client retries with the same ``client_msg_id``).

Both are subclasses handed to daphne (its CLI's ``server_class``), not patches: a plain
``daphne chatproject.asgi:application`` still serves Parley, only without them (a restart
then drops sockets with 1006, and clients reconnect with backoff).
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import sys
import threading
import time
import traceback
from pprint import pformat
from typing import Any, Callable, cast

from autobahn import util as autobahn_util
from autobahn.twisted import websocket as autobahn_twisted_websocket
from autobahn.websocket import protocol as autobahn_protocol
from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings

from messaging.events import CLOSE_RESTARTING

from . import inbound

# daphne's command line passes 1 MiB for both frame limits unless told otherwise.
DAPHNE_DEFAULT_LIMIT = 1024 * 1024


class _FormattedWhenLogged:
    """``format(*args)``, computed only if a log line actually writes it."""

    __slots__ = ("format", "args")

    def __init__(self, format: Callable[..., str], *args: Any) -> None:
        self.format, self.args = format, args

    def __str__(self) -> str:
        return self.format(*self.args)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _when_logged(formatter: Callable[..., str]) -> Callable[..., _FormattedWhenLogged]:
    # A partial, not a lambda: it runs three times per frame sent, and a partial is no Python frame.
    return functools.partial(_FormattedWhenLogged, formatter)


# autobahn builds the arguments of its debug log lines whether or not debug logging is on: it
# pretty-prints its whole table of protocol options on every new connection (a fifth of a
# gateway's CPU in a reconnect storm) and colours the function and values of a line on every
# frame sent or received (click.style, several per frame). Issue 15's profiles
# (docs/benchmarks/profiles). Its modules' formatters are replaced by ones that format only when
# a line is written: with debug on, the lines read as before. Every use is a log argument.
autobahn_protocol.pformat = _when_logged(pformat)  # type: ignore[assignment]
for _module in (autobahn_protocol, autobahn_twisted_websocket):
    _module.hltype = _when_logged(autobahn_util.hltype)  # type: ignore[attr-defined]
    _module.hlval = _when_logged(autobahn_util.hlval)  # type: ignore[attr-defined]

logger = logging.getLogger(__name__)


class GatewayWebSocketProtocol(WebSocketProtocol):
    maxMessagePayloadSize: int  # noqa: N815 - autobahn's name, set by its factory's options

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803 - autobahn's names
        """daphne's, with the frame's arrival time: how long frames wait in a socket's inbound
        queue before the consumer takes them is part of degraded mode's gateway lag."""
        if self.muted:
            return
        self.last_ping = time.time()
        message: dict[str, Any] = {"type": "websocket.receive", "received_at": time.monotonic()}
        if isBinary:
            message["bytes"] = payload
        else:
            message["text"] = payload.decode("utf8")
        self.application_queue.put_nowait(message)

    def onOpen(self) -> None:  # noqa: N802 - autobahn's name
        super().onOpen()
        inbound.watch(self.application_queue)  # its waiting frames count as lag (gateway.inbound)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        if hasattr(self, "application_queue"):
            inbound.forget(self.application_queue)  # what it still holds is never read
        super().onClose(wasClean, code, reason)

    def serverClose(self, code: int | None = None) -> None:  # noqa: N802 - daphne's name
        if code == CLOSE_RESTARTING:
            self.sendCloseFrame(code=code)
        else:
            super().serverClose(code)

    def sendMessage(self, payload: bytes, isBinary: bool = False, fragmentSize: int | None = None,  # noqa: N802, N803
                    sync: bool = False, doNotCompress: bool = False) -> None:
        """The frame limit is for what clients send: autobahn applies its message limit to what
        the server sends too, and a replay page of long messages is far over 64 KiB. Lifted
        around the server's own send (the reactor runs one send at a time)."""
        limit, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
        try:
            super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)
        finally:
            self.maxMessagePayloadSize = limit


class GatewayServer(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for limit in ("websocket_max_message_size", "websocket_max_frame_size"):
            if kwargs.get(limit) in (None, DAPHNE_DEFAULT_LIMIT):
                kwargs[limit] = settings.PARLEY_WS_MAX_FRAME_BYTES
        super().__init__(*args, **kwargs)
        endpoints: list[str] = cast(Any, self).endpoints  # daphne is untyped
        self.endpoints = [_with_backlog(e, settings.PARLEY_GATEWAY_LISTEN_BACKLOG) for e in endpoints]
        self.ports: list[Any] = []  # the listening ports, closed once the grace period is over
        ready: Callable[[], None] | None = kwargs.get("ready_callable")

        def on_ready() -> None:
            # Daphne calls this right before the reactor runs, after registering its own
            # shutdown trigger (which cancels the application instances).
            from twisted.internet import reactor

            from . import heap  # imported once Django is set up, as _drain's imports

            cast(Any, reactor).addSystemEventTrigger("before", "shutdown", _drain)
            heap.settle()  # everything is loaded: freeze it
            if ready is not None:
                ready()

        self.ready_callable = on_ready

    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # Server.run builds daphne's factory; its sockets speak GatewayWebSocketProtocol, and a
        # protocol error (a frame over the limit: 1009) ends with a close frame, not a dropped
        # connection. daphne's own options follow this (it never sets failByDrop).
        factory.protocol = GatewayWebSocketProtocol
        factory.setProtocolOptions(failByDrop=False)
        self._ws_factory = factory

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    def kill_all_applications(self) -> Any:
        """Daphne's shutdown trigger (it cancels every application instance at once and waits
        for them without a bound), bounded: see the module's docstring."""
        from twisted.internet import defer

        timeout = settings.PARLEY_GATEWAY_SHUTDOWN_TIMEOUT_SECONDS
        _exit_by(timeout)
        loop = asyncio.get_event_loop()
        task = loop.create_task(self._finish_applications(timeout), context=contextvars.Context())
        return defer.Deferred.fromFuture(task)

    async def _finish_applications(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        grace_ends = loop.time() + min(settings.PARLEY_GATEWAY_SHUTDOWN_GRACE_SECONDS, timeout)
        # 1. In-flight requests finish on their own, while the loop still runs what their threads
        #    hand it; meanwhile the runtime's drain closes the sockets (1012).
        while self._running() and loop.time() < grace_ends:
            await asyncio.sleep(0.05)
        # 2. Nothing new starts: the load balancer sends it elsewhere (a refused connection).
        for port in self.ports:
            port.stopListening()
        # 3. What is left is cancelled, as daphne does, and waited for until the bound.
        running = self._running()
        for instance in running:
            instance.cancel()
        logger.info("shutdown: cancelled %d application instances still running", len(running))
        if running:
            await asyncio.wait(running, timeout=max(0.0, ends - loop.time()))

    def _running(self) -> list[asyncio.Future[Any]]:
        return [instance for details in list(self.connections.values())
                if (instance := details.get("application_instance")) is not None and not instance.done()]


def _with_backlog(endpoint: str, backlog: int) -> str:
    """A TCP or UNIX endpoint listening with ``backlog`` pending connections (Twisted's default
    is 50: a burst of new connections beyond it, a reconnect storm or a crowd signing up at
    once, is reset by the kernel before daphne ever sees it). An explicit backlog is kept."""
    kind = endpoint.split(":", 1)[0]
    if kind not in ("tcp", "tcp6", "unix") or "backlog=" in endpoint:
        return endpoint
    return f"{endpoint}:backlog={backlog}"


def _exit_by(timeout: float) -> None:
    """End the process ``timeout`` seconds from now if it has not exited by itself: a thread
    cannot be interrupted, and one blocked (on the stopped event loop, on an unanswering
    server) would keep Python's exit joining it forever."""
    def watch() -> None:
        time.sleep(timeout)
        stuck = _busy_threads()
        logger.error("gateway still running %.1f s after shutdown began; abandoning the work of %d "
                     "threads: %s", timeout, len(stuck), "; ".join(stuck) or "none")
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(0)

    threading.Thread(target=watch, name="parley-exit-watchdog", daemon=True).start()


def _busy_threads() -> list[str]:
    """Each non-daemon thread still alive, with the innermost line of Parley's code it is in."""
    frames = sys._current_frames()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    busy = []
    for thread in threading.enumerate():
        if thread.daemon or thread is threading.main_thread() or thread.ident not in frames:
            continue
        ours = [f for f in traceback.extract_stack(frames[thread.ident])
                if f.filename.startswith(root) and "site-packages" not in f.filename]
        if ours:
            busy.append(f"{thread.name} in {os.path.relpath(ours[-1].filename, root)}:{ours[-1].lineno} {ours[-1].name}")
    return busy


def _drain() -> Any:
    from twisted.internet import defer

    from ops import health

    from . import runtime  # imported once Django is set up (daphne loads the application first)

    health.draining.set()  # /readyz says 503: the load balancer stops sending new clients here
    gateway = runtime.running(asyncio.get_event_loop())
    if gateway is None:
        return None
    # A fresh context: the trigger fires in whatever context the signal found.
    task = gateway.loop.create_task(gateway.drain(), context=contextvars.Context())
    return defer.Deferred.fromFuture(task)


class GatewayCommandLine(CommandLineInterface):
    description = "Parley's WebSocket and HTTP gateway (daphne, with graceful 1012 restarts)"
    server_class = GatewayServer


def main() -> None:
    """daphne's command line, Parley's server: what ``parley-gateway`` and ``python -m gateway``
    run once gateway.launch has chosen the event loop."""
    GatewayCommandLine.entrypoint()
