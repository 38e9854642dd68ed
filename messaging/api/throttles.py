"""Rate limits of the REST edge, each read from a ``PARLEY_RATE_*`` setting ("<count>/<s|m|h|d>").

Counters live in the shared cache (Redis in production), so every process counts together.
A throttled request gets 429 with ``Retry-After``. Only the endpoints that guard credentials
and tickets are throttled here; they need the cache anyway, so when it is down they answer
503 rather than let guessing run unlimited. Message sends do not touch the cache at all:
PostgreSQL alone decides whether a send is stored.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from rest_framework.exceptions import APIException
from rest_framework.throttling import SimpleRateThrottle

from messaging.errors import Unavailable

logger = logging.getLogger(__name__)


class SettingRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is the setting named by ``rate_setting``, read per request."""

    rate_setting: str

    def get_rate(self) -> str:
        return getattr(settings, self.rate_setting)

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except APIException:
            raise  # e.g. a malformed body met while reading the username: still a 400
        except Exception as exc:  # noqa: BLE001 - the counter store is unreachable
            logger.warning("rate limiter %s unavailable", self.scope, exc_info=True)
            raise Unavailable("this service is briefly unavailable; try again", retry_after_ms=1000) from exc

    def key(self, ident: str) -> str:
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LoginPerIPThrottle(SettingRateThrottle):
    """Password guessing from one address, whatever the usernames tried."""

    scope = "login-ip"
    rate_setting = "PARLEY_RATE_LOGIN"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.key(self.get_ident(request))


class LoginPerUsernameThrottle(SettingRateThrottle):
    """Password guessing against one account, from however many addresses."""

    scope = "login-user"
    rate_setting = "PARLEY_RATE_LOGIN"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        username = request.data.get("username") if isinstance(request.data, dict) else None
        if not isinstance(username, str) or not username:
            return None  # the request is a 400 anyway
        # Hashed: cache keys must not carry arbitrary user input.
        return self.key(hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest())


class SignupThrottle(SettingRateThrottle):
    scope = "signup"
    rate_setting = "PARLEY_RATE_SIGNUP"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.key(self.get_ident(request))


class PerUserThrottle(SettingRateThrottle):
    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.key(str(request.user.pk)) if request.user.is_authenticated else None


class WsTicketThrottle(PerUserThrottle):
    scope = "ws-ticket"
    rate_setting = "PARLEY_RATE_WS_TICKET"
