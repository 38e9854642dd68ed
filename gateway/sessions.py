"""Django's session in a WebSocket handshake's scope, for gateway.auth, and nothing more.

A browser on Parley's pages opens its socket with the session cookie (CONTRACT: "WebSocket
accepts the session cookie, or ?ticket=T"). channels' ``SessionMiddleware`` puts the session in
the scope too, but it also wraps ``send`` so as to save a modified session and set its cookie
on the way out. A gateway never writes the session, and that wrapper ran on every frame sent
to every socket: 2-3.5 % of a gateway delivering to a 1,000-member channel (issue 15's
profiles). This middleware only reads the session, and reads it lazily: the store touches
nothing until gateway.auth asks it for the user, and only when the handshake has no ticket.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings


class ReadOnlySessionMiddleware:
    """``scope["session"]``: the session named by the handshake's cookie (channels'
    ``CookieMiddleware`` must be outside it, to parse the cookies)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        store = import_module(settings.SESSION_ENGINE).SessionStore
        session_key = scope["cookies"].get(settings.SESSION_COOKIE_NAME)
        return await self.inner({**scope, "session": store(session_key)}, receive, send)
