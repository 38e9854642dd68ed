"""The WebSocket gateway at /ws/v1/ (CONTRACT, "WebSocket"; docs/architecture.md, "Live path").

The consumer is an edge: it authenticates the handshake, parses frames
(messaging.gateway.protocol), delegates to the same use-case functions as REST, and keeps
the per-connection stream state (messaging.gateway.stream) that makes delivery in-order
and gap-free. Live events reach it through the process's hub (messaging.gateway.hub), not
through a channel of its own, and are handled one at a time by a pump task, under the
same lock as hello and replay pages, so the stream state has a single writer at a time.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from types import SimpleNamespace
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import structlog
from autobahn.exception import Disconnected
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib import auth
from django.http.request import split_domain_port, validate_host

from messaging import degraded, fanout, metrics, ratelimit
from messaging.actions import do_send_message
from messaging.errors import ParleyError, RateLimited
from messaging.models import Device, User
from messaging.moderation import removals_to_replay
from messaging.replay import conversation_last_seqs, replay_page, resume_points
from receipts.watermarks import do_mark_read

from . import presence
from .admission import admission
from .ackbatch import acks
from .db import db
from .fills import fills
from .hub import hub
from .process import CLOSE_RESTARTING, SocketTelemetry, gateway
from .protocol import Ack, FrameError, Hello, Ping, Read, Replay, Send, Typing, parse_frame
from .stream import Action, ConnectionStreams

logger = logging.getLogger(__name__)

CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_FRAMES = 4400
CLOSE_RATE_LIMIT_ABUSE = 4429


def origin_allowed(origin: str | None) -> bool:
    """A browser's Origin must name an allowed host; a missing Origin is a non-browser client."""
    if origin is None:
        return True
    trusted = {o.rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS}
    if origin.rstrip("/") in trusted:
        return True
    domain, _port = split_domain_port(urlsplit(origin).netloc)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def _authenticate(scope: dict[str, Any], ticket: str | None, device_id: str | None) -> tuple[int, User | None, Device | None]:
    """(close code or 0, user, device). Runs in a thread: sessions and tickets hit storage."""
    from messaging.tickets import redeem_ticket

    user: User | None = None
    if ticket:
        user_id = redeem_ticket(ticket, device_id=device_id)
        if user_id is not None:
            user = User.objects.filter(pk=user_id, is_active=True).first()
    elif "session" in scope:
        candidate = auth.get_user(SimpleNamespace(session=scope["session"]))
        if candidate.is_authenticated and candidate.is_active:
            user = candidate
    if user is None:
        return CLOSE_NOT_AUTHENTICATED, None, None
    if user.is_suspended:
        return CLOSE_FORBIDDEN, user, None  # messaging.moderation.do_set_suspended
    from messaging.actions import _as_uuid

    uuid = _as_uuid(device_id)
    device = Device.objects.filter(pk=uuid, user=user).first() if uuid else None
    if device is None:
        return CLOSE_FORBIDDEN, user, None
    return 0, user, device


def _frame_text(event: dict[str, Any], build: Callable[[], dict[str, Any]]) -> str:
    """The frame for a layer event, serialized once per process: every socket shares the event."""
    text = event.get("_frame")
    if text is None:
        text = event["_frame"] = json.dumps(build())
    return text


class GatewayConsumer(AsyncJsonWebsocketConsumer):
    # No per-socket layer channel: the process hub holds the only one (see hub.py).
    channel_layer_alias = "parley-hub-only"

    # --- lifecycle ---------------------------------------------------------------------------
    async def connect(self) -> None:
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(connection_id=uuid.uuid4().hex[:12])
        self.telemetry = SocketTelemetry()
        self.disconnected = False
        self.user: User | None = None
        self.device: Device | None = None
        self.streams = ConnectionStreams()
        self.large: set[int] = set()
        self.groups_joined: set[str] = set()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stream_lock = asyncio.Lock()
        self.typing_sent_at: dict[int, float] = {}
        self.bad_frames: list[float] = []
        # Frames of any kind, and refusals: sustained refusals close the socket (4429).
        self.frame_limit = ratelimit.ConnectionLimit(ratelimit.Rate.parse(settings.PARLEY_RATE_WS_FRAMES))
        self.refusal_limit = ratelimit.ConnectionLimit(ratelimit.Rate.parse(settings.PARLEY_RATE_WS_REFUSALS))
        self.helloed = False
        self.closing = False
        self.pump: asyncio.Task | None = None

        # Accept first, so that every refusal reaches the client with the contract's close code.
        await self.accept()
        headers = dict(self.scope.get("headers", []))
        origin = headers.get(b"origin")
        if not origin_allowed(origin.decode("latin-1") if origin is not None else None):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        ticket = (query.get("ticket") or [None])[0]
        device_id = (query.get("device") or [None])[0]
        code, user, device = await db(_authenticate)(self.scope, ticket, device_id)
        if code:
            await self.close(code=code)
            return
        self.user, self.device = user, device
        structlog.contextvars.bind_contextvars(user_id=user.pk, device_id=str(device.pk))
        self.pump = asyncio.get_running_loop().create_task(self._pump())
        await self._join(fanout.user_group(user.pk))
        await self._join(fanout.device_group(device.pk))
        gateway.opened(self, started=started)

    async def disconnect(self, code: int) -> None:
        if self.disconnected:
            return  # restart() already cleaned up
        self.disconnected = True
        self.closing = True
        gateway.closed(self, code=code)
        for group in list(self.groups_joined):
            await hub.unsubscribe(group, self)
        if self.pump is not None:
            self.pump.cancel()
        if self.user is not None and self.device is not None:
            await acks.flush()  # a clean disconnect leaves its cursors stored
            if self.helloed:
                await presence.went_offline(self.user.pk)

    async def _join(self, group: str) -> None:
        self.groups_joined.add(group)
        await hub.subscribe(group, self)

    async def _leave(self, group: str) -> None:
        self.groups_joined.discard(group)
        await hub.unsubscribe(group, self)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        # A client may close while its frame is being answered (a send in flight, a fill):
        # the answer has nowhere to go, and that is not a server error.
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Disconnected:
            self.closing = True

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale DB connections before every handler (a thread hop per frame);
        # our database work already runs through channels' database_sync_to_async (gateway/db.py), which does that.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- frames from the client --------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.user is None or self.closing:
            return
        try:
            frame = parse_frame(text_data)
        except FrameError as error:
            await self._bad_frame(error)
            return
        # Acks are exempt: they cost a dict update (flushed in batches), and their rate follows
        # the traffic the server sends, not the client's choice.
        wait = 0 if isinstance(frame, Ack) else self.frame_limit.hit()
        if wait:
            await self._rate_limited(frame, wait)
            return
        try:
            await self._handle(frame)
        except FrameError as error:
            await self._bad_frame(error)
        except ParleyError as error:
            await self.send_json({"type": "error", "code": error.code, "detail": error.detail})

    async def _bad_frame(self, error: FrameError) -> None:
        if error.client_msg_id is not None:
            await self.send_json({"type": "send.error", "client_msg_id": error.client_msg_id,
                                  "code": error.code, "detail": error.detail})
        else:
            await self.send_json({"type": "error", "code": error.code, "detail": error.detail})
        now = time.monotonic()
        window = settings.PARLEY_WS_BAD_FRAME_WINDOW_SECONDS
        self.bad_frames = [t for t in self.bad_frames if now - t < window] + [now]
        if len(self.bad_frames) > settings.PARLEY_WS_MAX_BAD_FRAMES:
            await self.close(code=CLOSE_BAD_FRAMES)

    async def _rate_limited(self, frame, wait_ms: int) -> None:
        """Refuse a frame over the connection's frame rate, unprocessed."""
        reply = {"code": RateLimited.code, "detail": "too many frames; slow down", "retry_after_ms": wait_ms}
        if isinstance(frame, Send):
            echo = frame.client_msg_id if isinstance(frame.client_msg_id, str) else ""
            await self.send_json({"type": "send.error", "client_msg_id": echo, **reply})
        else:
            await self.send_json({"type": "error", **reply})
        await self._refused()

    async def _refused(self) -> None:
        """Count a refusal; a client that keeps going past them is closed (4429)."""
        if self.refusal_limit.hit() and not self.closing:
            self.closing = True
            await self.close(code=CLOSE_RATE_LIMIT_ABUSE)

    async def _handle(self, frame) -> None:
        match frame:
            case Hello():
                await self._hello(frame)
            case Send():
                await self._send_message(frame)
            case Ack():
                self._require_follow(frame.conversation)
                self.telemetry.acked(frame.conversation, frame.seq)
                acks.add(user_id=self.user.pk, device_id=self.device.pk, conversation_id=frame.conversation,
                         seq=frame.seq)
            case Read():
                self._require_follow(frame.conversation)
                await db(do_mark_read)(user=self.user, conversation_id=frame.conversation, seq=frame.seq)
            case Replay():
                self._require_follow(frame.conversation)
                await self._replay(frame)
            case Typing():
                await self._typing(frame)
            case Ping():
                await self.send_json({"type": "pong"})

    def _require_follow(self, conversation_id: int) -> None:
        if not self.helloed:
            raise FrameError("invalid", "send hello first")
        if not self.streams.follows(conversation_id):
            raise FrameError("not_found", "conversation not found")

    async def _hello(self, frame: Hello) -> None:
        if self.helloed:
            raise FrameError("invalid", "hello was already received on this connection")
        points = await db(resume_points)(user=self.user, device_id=self.device.pk, cursors=frame.cursors)
        removals = await db(removals_to_replay)(device=self.device)
        async with self.stream_lock:
            self.helloed = True
            for point in points:
                self.streams.follow(point.conversation_id, held=point.resume_after,
                                    behind=point.resume_after < point.last_seq)
                hub.note_seq(point.conversation_id, point.last_seq)
                if fanout.is_large(point.member_count):
                    self.large.add(point.conversation_id)
                await self._join(fanout.conversation_group(point.conversation_id))
            # A reconnect storm waits here for the process's replay budget, small gaps first;
            # live events queue behind the stream lock meanwhile.
            async with admission.slot(behind=sum(p.last_seq - p.resume_after for p in points)):
                for point in points:
                    if point.resume_after < point.last_seq:
                        await self._send_page(point.conversation_id, point.resume_after, resuming=True)
            for removal in removals:
                await self.send_json({"type": "message.removed", **removal})
            await self.send_json({"type": "ready",
                                  "conversations": {str(p.conversation_id): p.last_seq for p in points}})
            if degraded.current().shed:
                await self.send_json({"type": "degraded", "shed": list(degraded.current().shed)})
        self.telemetry.helloed(resumed=bool(frame.cursors) or any(p.from_cursor for p in points))
        await presence.came_online(self.user.pk)

    async def _send_page(self, conversation_id: int, after_seq: int, limit: int | None = None, *,
                         resuming: bool = False) -> None:
        """Send one replay page (caller holds the stream lock); catch up live if it was the last.

        ``resuming``: hello's first page, authorized by resume_points and shared by every socket
        of the process resuming from the same seq; a ``replay`` frame's page is authorized again.
        """
        self.streams.client_holds(conversation_id, after_seq)
        if resuming:
            shared = await fills.resume_page(conversation_id, after_seq)
            page, text = shared.page, shared.page_frame()
        else:
            page = await db(replay_page)(user=self.user, conversation_id=conversation_id,
                                         after_seq=after_seq, limit=limit)
            text = json.dumps({"type": "messages", "conversation": conversation_id,
                               "messages": page.messages, "has_more": page.has_more})
        self.streams.sent_run(conversation_id, [m["seq"] for m in page.messages])
        await self.send(text_data=text)
        self.telemetry.wrote(conversation_id, page.messages, path="replay")
        self.streams.page_done(conversation_id, has_more=page.has_more)
        if not page.has_more:
            await self._settle(conversation_id)

    async def _replay(self, frame: Replay) -> None:
        behind = max(hub.announced.get(frame.conversation, 0) - frame.after_seq, 1)
        async with admission.slot(behind=behind), self.stream_lock:
            await self._send_page(frame.conversation, frame.after_seq, frame.limit)

    async def _send_message(self, frame: Send) -> None:
        started = time.perf_counter()
        echo = frame.client_msg_id if isinstance(frame.client_msg_id, str) else ""
        if not self.helloed:
            raise FrameError("invalid", "send hello first", client_msg_id=echo)
        try:
            result = await db(do_send_message)(sender=self.user, conversation_id=frame.conversation,
                                               client_msg_id=frame.client_msg_id, body=frame.body,
                                               device=self.device)
        except ParleyError as error:
            reply = {"type": "send.error", "client_msg_id": echo, "code": error.code, "detail": error.detail}
            if error.retry_after_ms is not None:
                reply["retry_after_ms"] = error.retry_after_ms
            await self.send_json(reply)
            if isinstance(error, RateLimited):
                await self._refused()
            return
        await self.send_json({"type": "send.ok", "client_msg_id": echo, "message": result.payload,
                              "duplicate": result.duplicate})
        metrics.observe_stage("response", started)

    async def _typing(self, frame: Typing) -> None:
        self._require_follow(frame.conversation)
        if frame.conversation in self.large:
            return  # large channels carry no typing: it would multiply by thousands
        if degraded.sheds(degraded.TYPING):
            return
        # This connection's throttle first: most keystrokes stop here, without a cache round trip.
        now = time.monotonic()
        if now - self.typing_sent_at.get(frame.conversation, 0.0) < settings.PARLEY_TYPING_THROTTLE_MS / 1000:
            return
        self.typing_sent_at[frame.conversation] = now
        try:  # then the user's, across devices
            await db(ratelimit.enforce)(ratelimit.TYPING, f"{frame.conversation}:{self.user.pk}", user=self.user)
        except ParleyError:
            return  # over the rate, or no cache: typing is lossy, dropping it costs nothing
        await presence.publish_typing(conversation_id=frame.conversation, user_id=self.user.pk)

    # --- live events, from the hub -------------------------------------------------------------
    def deliver(self, event: dict[str, Any]) -> None:
        if self.closing:
            return
        if event["type"] == "gateway.degraded":
            # Not behind the queue: under a flood the queue is the flood, and the client should
            # hear that extras are shed now, not after the backlog (the frame carries no seq).
            asyncio.get_running_loop().create_task(self._on_degraded(event["shed"]))
            return
        self.events.put_nowait(event)

    def resync(self) -> None:
        self.deliver({"type": "gateway.resync"})

    async def _pump(self) -> None:
        while True:
            event = await self.events.get()
            hub.note_event_handled(event)  # how long it queued (degraded mode's gateway lag)
            try:
                await self._on_event(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad event must not stop the stream; replay repairs
                logger.exception("gateway failed to handle %s", event.get("type"))

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind in ("conv.message", "conv.tail"):
            if not self.helloed:
                return
            async with self.stream_lock:
                await self._on_live(event["conversation"], event["seq"],
                                    event if kind == "conv.message" else None)
        elif kind == "conv.messages":
            if self.helloed:
                async with self.stream_lock:
                    await self._on_batch(event)
        elif kind == "gateway.receipt":  # coalesced and serialized by the hub (receipts.py)
            if not self.streams.follows(event["conversation"]):
                return
            if "own_user" in event and (event["own_user"] != self.user.pk
                                        or str(self.device.pk) in event["except_devices"]):
                return
            await self.send(text_data=event["text"])
        elif kind == "conv.removed":
            if self.streams.follows(event["conversation"]):
                await self.send_json({"type": "message.removed", "conversation": event["conversation"],
                                      "id": event["id"], "seq": event["seq"]})
        elif kind == "conv.typing":
            if (event["user"] != self.user.pk and self.streams.follows(event["conversation"])
                    and not degraded.sheds(degraded.TYPING)):
                await self.send_json({"type": "typing", "conversation": event["conversation"], "user": event["user"]})
        elif kind == "conv.presence":
            if event["user"] != self.user.pk and not degraded.sheds(degraded.PRESENCE):
                await self.send_json({"type": "presence", "user": event["user"], "online": event["online"]})
        elif kind == "user.joined":
            await self._on_joined(event["conversation"])
        elif kind == "user.left":
            await self._on_left(event["conversation"])
        elif kind == "user.updated":
            if self.helloed:
                await self.send_json({"type": "conversation.updated", "conversation": event["conversation"]})
        elif kind == "socket.close":
            self.closing = True
            await self.close(code=event["code"])
        elif kind == "gateway.resync":
            await self._resync()

    async def _on_live(self, conversation_id: int, seq: int, event: dict[str, Any] | None) -> None:
        decision = self.streams.on_live(conversation_id, seq)
        if decision.action is Action.SEND and event is not None:
            if self.streams.sent_run(conversation_id, [seq]):
                await self.send(text_data=_frame_text(event, lambda: {"type": "message", "message": event["message"]}))
                self.telemetry.wrote(conversation_id, [event["message"]], path="direct", event=event)
        elif decision.action in (Action.SEND, Action.FILL):
            await self._fill(conversation_id, self.streams.held(conversation_id), seq)

    async def _on_batch(self, event: dict[str, Any]) -> None:
        """A large channel's batch: a contiguous run, sent as one ``messages`` frame."""
        conversation_id = event["conversation"]
        decision = self.streams.on_live(conversation_id, event["last_seq"])
        if decision.action not in (Action.SEND, Action.FILL):
            return
        if event["first_seq"] > self.streams.held(conversation_id) + 1:
            await self._fill(conversation_id, self.streams.held(conversation_id), event["first_seq"] - 1)
        messages = event["messages"]
        fresh = self.streams.sent_run(conversation_id, [m["seq"] for m in messages])
        if not fresh:
            return
        if len(fresh) == len(messages):
            await self.send(text_data=_frame_text(event, lambda: {
                "type": "messages", "conversation": conversation_id, "messages": messages, "has_more": False}))
            self.telemetry.wrote(conversation_id, messages, path="buffered")
        else:
            first = fresh[0]
            tail = [m for m in messages if m["seq"] >= first]
            await self.send_json({"type": "messages", "conversation": conversation_id,
                                  "messages": tail, "has_more": False})
            self.telemetry.wrote(conversation_id, tail, path="buffered")

    async def _settle(self, conversation_id: int) -> None:
        """After catching up: fill whatever live events announced while the client was behind."""
        decision = self.streams.owed(conversation_id)
        if decision.action is Action.FILL:
            await self._fill(conversation_id, decision.after_seq, decision.upto_seq)

    async def _fill(self, conversation_id: int, after_seq: int, upto_seq: int) -> None:
        shared = await fills.fill(conversation_id, after_seq, upto_seq)  # one read per process
        page = shared.page
        path = "buffered" if conversation_id in self.large else "direct"
        if page.has_more:
            # Too far behind for a live fill: hand the client a replay page and let it pull.
            self.streams.page_done(conversation_id, has_more=True)
            self.streams.sent_run(conversation_id, [m["seq"] for m in page.messages])
            await self.send_json({"type": "messages", "conversation": conversation_id,
                                  "messages": page.messages, "has_more": True})
            self.telemetry.wrote(conversation_id, page.messages, path=path)
            return
        fresh = set(self.streams.sent_run(conversation_id, [m["seq"] for m in page.messages]))
        if conversation_id in self.large and len(fresh) > 1:
            # A large channel's members take live batches: the fill goes out as one, not as a
            # frame per message per member.
            if len(fresh) == len(page.messages):
                await self.send(text_data=shared.page_frame())
                self.telemetry.wrote(conversation_id, page.messages, path=path)
            else:
                run = [m for m in page.messages if m["seq"] in fresh]
                await self.send_json({"type": "messages", "conversation": conversation_id,
                                      "messages": run, "has_more": False})
                self.telemetry.wrote(conversation_id, run, path=path)
            return
        for message in page.messages:
            if message["seq"] in fresh:
                await self.send(text_data=shared.message_frame(message))
                self.telemetry.wrote(conversation_id, [message], path=path)

    async def _resync(self) -> None:
        if not self.helloed:
            return
        followed = list(self.streams.cursors())
        stored = await db(conversation_last_seqs)(followed)
        async with self.stream_lock:
            for conversation_id, last_seq in stored.items():
                await self._on_live(conversation_id, last_seq, None)

    async def _on_joined(self, conversation: dict[str, Any]) -> None:
        conversation_id = conversation["id"]
        if not self.helloed or self.streams.follows(conversation_id):
            return
        async with self.stream_lock:
            self.streams.follow(conversation_id, held=conversation["last_seq"])
            if fanout.is_large(conversation["member_count"]):
                self.large.add(conversation_id)
            await self._join(fanout.conversation_group(conversation_id))
            await self.send_json({"type": "conversation.joined", "conversation": conversation})

    async def _on_left(self, conversation: dict[str, Any]) -> None:
        conversation_id = conversation["id"]
        async with self.stream_lock:
            self.streams.unfollow(conversation_id)
            self.large.discard(conversation_id)
            await self._leave(fanout.conversation_group(conversation_id))
        if self.helloed:
            await self.send_json({"type": "conversation.left", "conversation": conversation})

    # --- operations: degraded mode and restarts (messaging.gateway.process) ----------------------
    async def _on_degraded(self, shed: list[str]) -> None:
        if not self.helloed or self.closing:
            return  # hello will say so; a closing socket needs no news
        try:
            await self.send_json({"type": "degraded", "shed": shed})
        except Exception:  # noqa: BLE001 - a task of its own: the socket went away meanwhile
            logger.debug("degraded frame not sent", exc_info=True)

    async def restart(self, *, after_ms: int) -> None:
        """This gateway is shutting down: tell the client when to come back, close, clean up."""
        if self.closing:
            return
        self.closing = True
        await self.send_json({"type": "reconnect", "after_ms": after_ms})
        await self.close(code=CLOSE_RESTARTING)
        await self.disconnect(CLOSE_RESTARTING)
