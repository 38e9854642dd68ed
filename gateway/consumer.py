"""The WebSocket edge at /ws/v1/ (CONTRACT, "WebSocket"; docs/architecture.md, "Live path").

Thin: it authenticates the handshake (gateway.auth), parses each frame (gateway.protocol),
applies the per-connection frame limits, and delegates: ``send`` and ``read`` to the same
use-case functions as REST, everything about the stream (hello, replay, acks, typing, live
events) to the socket's :class:`~gateway.connection.Connection`. Live events reach the
connection through the process's hub (gateway.runtime), not through a channel of its own.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Hashable, Mapping

import structlog
from autobahn.exception import Disconnected
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from messaging import ratelimit
from messaging.errors import ParleyError, RateLimited, Unavailable
from messaging.events import (
    CLOSE_BAD_FRAMES,
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL_ERROR,
    CLOSE_RATE_LIMIT_ABUSE,
    PONG,
    error_frame,
    send_ok_frame,
)
from messaging.send import do_send_message
from ops import metrics
from receipts.watermarks import do_mark_read

from . import runtime
from .auth import authenticate, handshake_origin, origin_allowed
from .connection import Connection
from .frames import encode
from .protocol import (
    Ack,
    Frame,
    FrameError,
    Hello,
    Ping,
    Read,
    Replay,
    ReplayChanges,
    Send,
    Typing,
    parse_frame,
)

logger = logging.getLogger(__name__)


class GatewayConsumer(AsyncWebsocketConsumer):
    # No per-socket layer channel: the process hub holds the only one (gateway.hub).
    channel_layer_alias = "parley-hub-only"
    connection: Connection | None = None
    server_closed = False  # this side sent the close: nothing more goes out

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # However this consumer ends (the client's disconnect, a close the server asked for, a
        # crash, daphne cancelling it on shutdown), the socket's cleanup runs, once: presence,
        # the open-connections gauge and the hub's registrations must never keep a dead socket.
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.connection is not None:
                await self.connection.close(CLOSE_INTERNAL_ERROR)  # a no-op after a disconnect

    async def connect(self) -> None:
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(connection_id=uuid.uuid4().hex[:12])
        self.bad_frames: list[float] = []
        # Frames of any kind; which refused frames are abuse (came back early, or past the hard
        # cap); sustained abuse closes the socket (4429). Refusals alone never do.
        self.frame_limit = ratelimit.ConnectionLimit(ratelimit.Rate.parse(settings.PARLEY_RATE_WS_FRAMES))
        self.retries = ratelimit.RetryRule(ratelimit.Rate.parse(settings.PARLEY_RATE_WS_HARD_CAP))
        self.abuse_limit = ratelimit.ConnectionLimit(ratelimit.Rate.parse(settings.PARLEY_RATE_WS_ABUSE))
        # Accept first, so that every refusal reaches the client with the contract's close code.
        await self.accept()
        if not origin_allowed(handshake_origin(self.scope), self.scope):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        gateway = await runtime.current()
        handshake = await gateway.db(authenticate)(self.scope)
        if handshake.refusal or handshake.user is None or handshake.device is None:
            await self.close(code=handshake.refusal)
            return
        structlog.contextvars.bind_contextvars(user_id=handshake.user.pk, device_id=str(handshake.device.pk))
        self.connection = Connection(gateway, user=handshake.user, device=handshake.device, transport=self)
        await self.connection.open()
        gateway.opened(self.connection, started=started)

    async def disconnect(self, code: int) -> None:
        if self.connection is not None:
            await self.connection.close(code)

    # --- the connection's transport --------------------------------------------------------------
    async def send_text(self, text: str) -> None:
        if self.server_closed:
            return  # an answer still in flight when the server closed: nobody to tell
        # A client may close while its frame is being answered (a send in flight, a fill):
        # the answer has nowhere to go, and that is not a server error.
        try:
            # Straight to the server (what AsyncWebsocketConsumer.send builds and hands on).
            await self.base_send({"type": "websocket.send", "text": text})
        except Disconnected:
            if self.connection is not None:
                self.connection.closing = True

    async def close_socket(self, code: int) -> None:
        await self.close(code=code)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.server_closed = True
        await super().close(code=code, reason=reason)

    async def reply(self, frame: Mapping[str, Any]) -> None:
        await self.send_text(encode(frame))

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale DB connections before every handler (a thread hop per frame);
        # our database work already runs through database_sync_to_async (gateway.db), which does that.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- frames from the client --------------------------------------------------------------
    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self.connection is not None:
            counts = self.connection.runtime.counts
            counts.handled()
            received_at = message.get("received_at")  # stamped by parley-gateway's protocol
            if received_at is not None:
                counts.inbound_wait(self, time.monotonic() - received_at)
        await super().websocket_receive(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        connection = self.connection
        if connection is None or connection.closing:
            return
        try:
            frame = parse_frame(text_data)
        except FrameError as error:
            await self._bad_frame(error)
            return
        # Acks are exempt: they cost a dict update (flushed in batches), and their rate follows
        # the traffic the server sends, not the client's choice.
        if not isinstance(frame, Ack) and not await self._admit(frame):
            return
        try:
            await self._handle(connection, frame)
        except FrameError as error:
            await self._bad_frame(error)
        except ParleyError as error:
            await self.reply(error_frame(error.code, error.detail))
        except Exception:  # noqa: BLE001 - a failure of ours (the database, a bug): say so, keep the socket
            logger.exception("%s frame failed", type(frame).__name__)
            echo = _echo(frame) if isinstance(frame, Send) else None
            await self.reply(error_frame(Unavailable.code, "the server could not do this now; try again",
                                         client_msg_id=echo, retry_after_ms=1000))

    async def _handle(self, connection: Connection, frame: Frame) -> None:
        match frame:
            case Hello():
                await connection.hello(frame.cursors, frame.changes, batch_receipts=frame.batch_receipts)
            case Send():
                await self._send_message(connection, frame)
            case Ack():
                connection.ack(frame.conversation, frame.seq)
            case Read():
                connection.require_follow(frame.conversation)
                await connection.runtime.db(do_mark_read)(user=connection.user, conversation_id=frame.conversation,
                                                          seq=frame.seq)
            case Replay():
                await connection.replay(frame.conversation, frame.after_seq, frame.limit)
            case ReplayChanges():
                await connection.replay_changes(frame.conversation, frame.after, frame.limit)
            case Typing():
                await connection.typing(frame.conversation)
            case Ping():
                await self.reply(PONG)

    async def _send_message(self, connection: Connection, frame: Send) -> None:
        started = time.perf_counter()
        echo = _echo(frame)
        if not connection.helloed:
            raise FrameError("invalid", "send hello first", client_msg_id=echo)
        try:
            result = await connection.runtime.db(do_send_message)(
                sender=connection.user, conversation_id=frame.conversation, client_msg_id=frame.client_msg_id,
                body=frame.body, device=connection.device, attachments=frame.attachments,
                reply_to=frame.reply_to)
        except ParleyError as error:
            retry_after_ms = error.retry_after_ms
            if isinstance(error, RateLimited) and retry_after_ms:  # its turn to come back (the 4429 rule)
                retry_after_ms = self.retries.refused(retry_key(frame), retry_after_ms, limit=error.limit,
                                                      interval=error.interval)
            await self.reply(error_frame(error.code, error.detail, client_msg_id=echo,
                                         retry_after_ms=retry_after_ms))
            return
        await self.reply(send_ok_frame(echo, result.payload, duplicate=result.duplicate))
        metrics.observe_stage("response", started)

    async def _bad_frame(self, error: FrameError) -> None:
        await self.reply(error_frame(error.code, error.detail, client_msg_id=error.client_msg_id))
        now = time.monotonic()
        window = settings.PARLEY_WS_BAD_FRAME_WINDOW_SECONDS
        self.bad_frames = [t for t in self.bad_frames if now - t < window] + [now]
        if len(self.bad_frames) > settings.PARLEY_WS_MAX_BAD_FRAMES:
            await self._close_for(CLOSE_BAD_FRAMES)

    async def _admit(self, frame: Frame) -> bool:
        """The per-connection limits (messaging.ratelimit.RetryRule has the rule): a frame that
        came back before the time it was told, or past the hard cap, is refused as abuse, and
        sustained abuse closes the socket (4429); a frame over the frame rate is refused and
        told when to come back, which is no abuse."""
        key = retry_key(frame)
        early_ms = self.retries.arrived(key)
        if early_ms:
            await self._refuse(frame, early_ms, "too early: wait the retry_after_ms you were given")
            if self.abuse_limit.hit():
                await self._close_for(CLOSE_RATE_LIMIT_ABUSE)
            return False
        wait = self.frame_limit.hit()
        if wait:
            rate = self.frame_limit.rate
            turn_ms = self.retries.refused(key, wait, limit="frames", interval=rate.seconds / rate.count)
            await self._refuse(frame, turn_ms, "too many frames; slow down")
            return False
        self.retries.admitted(key)
        return True

    async def _refuse(self, frame: Frame, wait_ms: int, detail: str) -> None:
        """Refuse a frame unprocessed, with the time to come back."""
        echo = _echo(frame) if isinstance(frame, Send) else None
        await self.reply(error_frame(RateLimited.code, detail, client_msg_id=echo, retry_after_ms=wait_ms))

    async def _close_for(self, code: int) -> None:
        """Close once: frames still arriving are ignored, and nothing is sent after the close."""
        connection = self.connection
        if connection is None or connection.closing:
            return
        connection.closing = True
        await self.close(code=code)


def retry_key(frame: Frame) -> Hashable:
    """What a refused frame is, for telling its retry from a new frame (ratelimit.RetryRule):
    a send by its client_msg_id, other frames by their type and conversation."""
    if isinstance(frame, Send):
        return ("send", frame.client_msg_id if isinstance(frame.client_msg_id, str) else repr(frame.client_msg_id))
    return (type(frame).__name__, getattr(frame, "conversation", None))


def _echo(frame: Send) -> str:
    """The client_msg_id to answer a send with (a non-string one is echoed as "")."""
    return frame.client_msg_id if isinstance(frame.client_msg_id, str) else ""
