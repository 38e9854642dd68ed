"""Single-use WebSocket tickets, for clients that cannot send a session cookie with the handshake.

``POST /api/v1/ws-ticket`` issues one; the gateway redeems it from ``/ws/v1/?ticket=T``. A
ticket lives in the shared cache (Redis in production, so any gateway can redeem it) for at
most ``PARLEY_WS_TICKET_TTL_SECONDS`` and works once: redeeming deletes it, and only the caller
whose delete actually removed the key wins, so two concurrent redeemers cannot both get in.
"""
from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.core.cache import cache

_KEY_PREFIX = "parley:ws-ticket:"
# What token_urlsafe(32) produces (43 characters), with room to spare; anything else is not
# one of ours and never reaches the cache as a key.
_TICKET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def issue_ticket(*, user_id: int, device_id: object = None) -> tuple[str, int]:
    """A new ticket for the user, optionally bound to one of the user's devices: ``(ticket, expires_in)``."""
    ticket = secrets.token_urlsafe(32)
    ttl = settings.PARLEY_WS_TICKET_TTL_SECONDS
    cache.set(_KEY_PREFIX + ticket, {"user": user_id, "device": _canonical(device_id)}, timeout=ttl)
    return ticket, ttl


def redeem_ticket(ticket: str, *, device_id: str | None = None) -> int | None:
    """The ticket's user id, once; None if the ticket is unknown, expired or already used.

    A ticket bound to a device is refused when ``device_id`` names another device.
    """
    if not isinstance(ticket, str) or not _TICKET_SHAPE.fullmatch(ticket):
        return None
    value = _take(_KEY_PREFIX + ticket)
    if value is None:
        return None
    bound = value["device"]
    if bound is not None and device_id is not None and _canonical(device_id) != bound:
        return None
    return value["user"]


def _take(key: str) -> Any:
    """The ticket's value, removed: one atomic step on Redis (chatproject.cache.RedisCache.pop);
    elsewhere a get, then the delete that only one of two racing callers wins."""
    pop = getattr(cache, "pop", None)
    if pop is not None:
        return pop(key)
    value = cache.get(key)
    return value if value is not None and cache.delete(key) else None


def _canonical(device_id: object) -> str | None:
    """One spelling per device id (with or without dashes, any case), or None."""
    if device_id is None:
        return None
    try:
        return str(uuid.UUID(str(device_id)))
    except ValueError:
        return str(device_id)  # not a UUID: it can never equal a bound (valid) device id
