"""Who is on the other end of a handshake (CONTRACT, "Authentication" and "WebSocket").

The consumer accepts first and then judges, so that every refusal carries the contract's
close code: a present ``Origin`` other than this site's own (scheme, host and port) or a
trusted one -> 4403 (cross-site WebSocket hijacking); no
session and no valid single-use ticket -> 4401; a suspended user, or a device that is not
the user's -> 4403.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Mapping
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib import auth
from django.http.request import split_domain_port, validate_host

from messaging.access import as_uuid
from messaging.devices import device_with_user
from messaging.events import CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED
from messaging.models import Device, User
from messaging.tickets import redeem_ticket


def own_origin(scope: Mapping[str, Any]) -> str | None:
    """The origin of the page that would open this socket from this site: the handshake's
    scheme (``wss`` is ``https``; a trusted proxy's ``SECURE_PROXY_SSL_HEADER`` says so too)
    and its ``Host`` header, port included. None without an allowed Host header."""
    headers = dict(scope.get("headers", []))
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    secure = scope.get("scheme") == "wss"
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:  # e.g. ("HTTP_X_FORWARDED_PROTO", "https"), set by DJANGO_SECURE behind a TLS proxy
        name = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        secure = secure or headers.get(name, b"").decode("latin-1").split(",")[0].strip() == proxy[1]
    return f"{'https' if secure else 'http'}://{host}"


def origin_allowed(origin: str | None, scope: Mapping[str, Any]) -> bool:
    """A browser's ``Origin`` must be this site's own, scheme, host and port alike, or one of
    ``CSRF_TRUSTED_ORIGINS``; a missing Origin is a non-browser client (judged by its credentials).
    """
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if origin in {o.strip().lower().rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    return origin == own_origin(scope)


def handshake_origin(scope: Mapping[str, Any]) -> str | None:
    origin = dict(scope.get("headers", [])).get(b"origin")
    return origin.decode("latin-1") if origin is not None else None


@dataclass(frozen=True)
class Handshake:
    """The outcome: a user and device, or the close code that refuses them."""

    refusal: int = 0
    user: User | None = None
    device: Device | None = None


def authenticate(scope: Mapping[str, Any]) -> Handshake:
    """Judge the handshake's ticket (or session) and device. Runs in a thread: sessions and
    tickets hit storage."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    ticket = (query.get("ticket") or [None])[0]
    device_id = (query.get("device") or [None])[0]
    device_uuid = as_uuid(device_id)
    user: User | None = None
    device: Device | None = None
    if ticket:
        user_id = redeem_ticket(ticket, device_id=device_id)
        if user_id is None:
            return Handshake(CLOSE_NOT_AUTHENTICATED)
        # The device with its user in one query (a reconnect storm makes a thousand of these).
        device = device_with_user(device_uuid, user_id) if device_uuid else None
        user = device.user if device is not None else User.objects.filter(pk=user_id).first()
    elif "session" in scope:
        candidate = auth.get_user(SimpleNamespace(session=scope["session"]))  # type: ignore[arg-type]
        if candidate.is_authenticated:
            user = candidate
            device = Device.objects.filter(pk=device_uuid, user=user).first() if device_uuid else None
    if user is None or not user.is_active:
        return Handshake(CLOSE_NOT_AUTHENTICATED)
    if user.is_suspended:
        return Handshake(CLOSE_FORBIDDEN, user)  # messaging.moderation.do_set_suspended
    if device is None:
        return Handshake(CLOSE_FORBIDDEN, user)
    return Handshake(0, user, device)
