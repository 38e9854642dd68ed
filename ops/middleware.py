"""A request id on every HTTP request: in the logs of the request and in its response.

A well-formed ``X-Request-ID`` from the load balancer is kept, so one id follows a request
through the proxy's logs and ours; otherwise a new one is made.
"""
from __future__ import annotations

import re
import uuid

import structlog
from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware

HEADER = "X-Request-ID"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _bind(request) -> str:
    offered = request.headers.get(HEADER, "")
    request_id = offered if _WELL_FORMED.fullmatch(offered) else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


@sync_and_async_middleware
def request_id_middleware(get_response):
    if iscoroutinefunction(get_response):
        async def middleware(request):
            request_id = _bind(request)
            response = await get_response(request)
            response[HEADER] = request_id
            return response
    else:
        def middleware(request):
            request_id = _bind(request)
            response = get_response(request)
            response[HEADER] = request_id
            return response
    return middleware
