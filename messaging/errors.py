"""Errors the use-case functions raise. Every edge (REST, WebSocket, tasks) maps them the same way.

``code`` is the machine-readable name used in REST error bodies and in ``send.error`` /
``error`` frames; ``http_status`` is what REST answers.
"""
from __future__ import annotations


class ParleyError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, detail: str = "", *, fields: dict[str, list[str]] | None = None,
                 retry_after_ms: int | None = None) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code.replace("_", " ")
        self.fields = fields or {}
        self.retry_after_ms = retry_after_ms


class Invalid(ParleyError):
    code = "invalid"
    http_status = 400


class NotFound(ParleyError):
    """Also what a non-member gets for a private conversation: existence is not revealed."""

    code = "not_found"
    http_status = 404


class Forbidden(ParleyError):
    code = "forbidden"
    http_status = 403


class Conflict(ParleyError):
    code = "conflict"
    http_status = 409


class TooLarge(ParleyError):
    """An upload over the size limit, or one that would take its uploader past the quota."""

    code = "too_large"
    http_status = 413


class RateLimited(ParleyError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, detail: str = "", *, retry_after_ms: int | None = None, limit: str = "",
                 interval: float = 0.0) -> None:
        super().__init__(detail, retry_after_ms=retry_after_ms)
        self.limit = limit  # the name of the limit that refused (messaging.ratelimit.Limit)
        self.interval = interval  # its rate's seconds per event: how far apart its retries fit


class Unavailable(ParleyError):
    code = "unavailable"
    http_status = 503
