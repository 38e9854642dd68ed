"""Probes for load balancers and orchestrators (CONTRACT, "Operations").

``/healthz`` answers while the process can serve HTTP (liveness). ``/readyz`` also proves the
two things a request needs: the database answers a query and every Redis server of the channel
layer answers (readiness); a probe that fails says which check failed, with 503. How far behind
a busy gateway is, is degraded mode's business, not the balancer's: a readiness probe that
waited behind the hub's backlog took busy gateways out of rotation and sent their load to the
others (ops.degraded sheds instead). A gateway that
is shutting down (SIGTERM: it sends its sockets away with 1012) answers 503 ``draining``,
so a load balancer routing on ``/readyz`` stops sending it new clients.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from messaging.layer import GATEWAY_CHANNEL_PREFIX

logger = logging.getLogger(__name__)

# Well below the usual probe timeouts, so a hung backend reads as "not ready" rather than
# as a probe timeout.
DEFAULT_READYZ_TIMEOUT_SECONDS = 2.0


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _layer_round_trip(timeout: float) -> None:
    layer = get_channel_layer()
    # The hub's prefix: on a serving gateway the hub holds the process's one receive turn and
    # routes what arrives for this channel to it; another prefix would never be read.
    channel = await layer.new_channel(GATEWAY_CHANNEL_PREFIX)
    await asyncio.wait_for(layer.send(channel, {"type": "readyz.ping"}), timeout)
    message = await asyncio.wait_for(layer.receive(channel), timeout)
    if message.get("type") != "readyz.ping":
        raise RuntimeError("the channel layer returned another message")


async def _layer_answers(timeout: float) -> None:
    layer = get_channel_layer()
    ping = getattr(layer, "ping", None)  # chatproject.layers: each Redis server of the layer
    if ping is None:
        await _layer_round_trip(timeout)  # another layer (in memory): a message there and back
    else:
        await asyncio.wait_for(ping(), timeout)


def check_channel_layer() -> None:
    """Every Redis server of the layer answers; for a layer that cannot say, a message sent to
    a fresh channel comes back."""
    timeout = getattr(settings, "PARLEY_READYZ_TIMEOUT_SECONDS", DEFAULT_READYZ_TIMEOUT_SECONDS)
    async_to_sync(_layer_answers)(timeout)


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "channel_layer": check_channel_layer}

# Set once, by the gateway server when it starts draining (gateway/server.py); the process ends after.
draining = threading.Event()


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    if draining.is_set():
        return JsonResponse({"status": "draining", "checks": {}}, status=503)
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", and says which
            logger.warning("readiness check %s failed", name, exc_info=True)
            results[name] = f"failed: {type(exc).__name__}"
    ready = all(result == "ok" for result in results.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": results},
                        status=200 if ready else 503)
