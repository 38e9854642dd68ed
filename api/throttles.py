"""DRF throttle classes over messaging.ratelimit, the one rate limiter (docs/security.md).

Each class only names its limit and how to identify the client; a refusal raises
:class:`~messaging.errors.RateLimited`, which the API's exception handler renders as 429 with
``Retry-After``, exactly as the use cases' own limits (message sends) are rendered.
"""
from __future__ import annotations

from typing import Any

from rest_framework.throttling import BaseThrottle

from messaging import ratelimit


class LimitThrottle(BaseThrottle):
    limit: ratelimit.Limit

    def ident(self, request: Any) -> str | None:
        """Whom to count; None: not this throttle's business (the request fails validation anyway)."""
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        ident = self.ident(request)
        if ident is not None:
            ratelimit.enforce(self.limit, ident, user=request.user)
        return True


class PerAddressThrottle(LimitThrottle):
    def ident(self, request: Any) -> str:
        return ratelimit.client_ip(request.META)


class LoginPerIPThrottle(PerAddressThrottle):
    """Password guessing from one address, whatever the usernames tried."""

    limit = ratelimit.LOGIN_IP


class LoginPerUsernameThrottle(LimitThrottle):
    """Password guessing against one account, from however many addresses."""

    limit = ratelimit.LOGIN_USERNAME

    def ident(self, request: Any) -> str | None:
        username = request.data.get("username") if isinstance(request.data, dict) else None
        if not isinstance(username, str) or not username:
            return None
        return ratelimit.hashed(username)


class SignupThrottle(PerAddressThrottle):
    limit = ratelimit.SIGNUP_IP


class WsTicketThrottle(LimitThrottle):
    limit = ratelimit.WS_TICKET

    def ident(self, request: Any) -> str | None:
        return str(request.user.pk) if request.user.is_authenticated else None
