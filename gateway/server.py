"""Daphne as Parley runs it: ``parley-gateway`` (or ``python -m gateway``) takes daphne's arguments and serves the same
ASGI application, with two things a chat gateway needs on a restart (docs/operations.md,
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
  ``PARLEY_WS_MAX_FRAME_BYTES`` (64 KiB) closes the connection with 1009, as the contract
  says, with a closing handshake (autobahn's default drops the TCP connection, which a client
  sees as 1006). daphne's own flags still win when given on the command line.

Both are subclasses handed to daphne (its CLI's ``server_class``), not patches: a plain
``daphne chatproject.asgi:application`` still serves Parley, only without them (a restart
then drops sockets with 1006, and clients reconnect with backoff).
"""
from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Callable, cast

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from messaging.events import CLOSE_RESTARTING

# daphne's command line passes 1 MiB for both frame limits unless told otherwise.
DAPHNE_DEFAULT_LIMIT = 1024 * 1024


class GatewayWebSocketProtocol(WebSocketProtocol):
    def serverClose(self, code: int | None = None) -> None:  # noqa: N802 - daphne's name
        if code == CLOSE_RESTARTING:
            self.sendCloseFrame(code=code)
        else:
            super().serverClose(code)


class GatewayServer(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from django.conf import settings  # daphne loads the application (and Django) first

        for limit in ("websocket_max_message_size", "websocket_max_frame_size"):
            if kwargs.get(limit) in (None, DAPHNE_DEFAULT_LIMIT):
                kwargs[limit] = settings.PARLEY_WS_MAX_FRAME_BYTES
        super().__init__(*args, **kwargs)
        ready: Callable[[], None] | None = kwargs.get("ready_callable")

        def on_ready() -> None:
            # Daphne calls this right before the reactor runs, after registering its own
            # shutdown trigger (which cancels the application instances).
            from twisted.internet import reactor

            cast(Any, reactor).addSystemEventTrigger("before", "shutdown", _drain)
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


def _drain() -> Any:
    from twisted.internet import defer

    from . import runtime  # imported once Django is set up (daphne loads the application first)

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
    """``parley-gateway`` / ``python -m gateway``: daphne's command line, Parley's server."""
    GatewayCommandLine.entrypoint()
