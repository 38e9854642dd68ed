"""The canary: one message through the public path, all the time (docs/operations.md, "Canary").

Every ``PARLEY_CANARY_INTERVAL_SECONDS`` the beat task ``parley.bulk.canary`` connects two
reference clients (messaging.client) through ``PARLEY_CANARY_URLS`` (the load balancer) as
two devices of a system user, sends one message from the first over its socket, and times
until the second socket has it: ticket, handshake, hello, the durable write, fan-out over
the channel layer, possibly across gateways. The result is a metric
(``parley_canary_send_to_deliver_seconds``, ``parley_canary_runs_total{outcome}``,
``parley_canary_last_success_timestamp_seconds``) and a log line; a failed or slow run is a
page-worthy signal that no internal metric can fake, since it is what a user would see.

The canary's conversation keeps one message per run (about 5,800 a day at the default
interval); it is a group of one, so nobody else sees them.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError

from messaging.accounts import issue_token
from messaging.conversations import do_create_group
from messaging.devices import do_register_device
from messaging.models import Conversation, Device, Membership, User

from . import metrics
from .client import Delivery, ParleyClient

logger = logging.getLogger(__name__)

USERNAME = "parley-canary"
TITLE = "Parley canary"
SENDER, LISTENER = "canary-sender", "canary-listener"


@dataclass(frozen=True)
class CanarySetup:
    token: str
    conversation_id: int
    sender_device: str
    listener_device: str
    last_seq: int  # the clients resume from here: only the new message matters


def ensure_canary() -> CanarySetup:
    """The canary's user, devices, conversation and token, made once through the use cases."""
    try:
        user, created = User.objects.get_or_create(username=USERNAME, defaults={"display_name": TITLE})
    except IntegrityError:  # another run made it first
        user, created = User.objects.get(username=USERNAME), False
    if created:
        user.set_unusable_password()  # it signs in with its API token only
        user.save(update_fields=["password"])
    devices = dict(Device.objects.filter(user=user, name__in=(SENDER, LISTENER)).values_list("name", "pk"))
    for name in (SENDER, LISTENER):
        if name not in devices:
            devices[name] = do_register_device(user=user, name=name, platform="canary").pk
    conversation_id = (Membership.objects.filter(user=user, conversation__title=TITLE,
                                                 conversation__kind=Conversation.Kind.GROUP)
                       .values_list("conversation_id", flat=True).first())
    if conversation_id is None:
        conversation_id = do_create_group(creator=user, title=TITLE, member_ids=[]).conversation.pk
    last_seq = Conversation.objects.values_list("last_seq", flat=True).get(pk=conversation_id)
    return CanarySetup(issue_token(user), conversation_id, str(devices[SENDER]), str(devices[LISTENER]), last_seq)


async def probe(setup: CanarySetup, *, urls: list[str], timeout: float) -> float:
    """Send one message from one socket and return the seconds until the other socket has it."""
    key = f"canary-{uuid.uuid4().hex}"
    arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def on_message(delivery: Delivery) -> None:
        if delivery.message["client_msg_id"] == key and not arrived.done():
            arrived.set_result(delivery.received_at)

    listener = ParleyClient(urls, token=setup.token, device_id=setup.listener_device, on_message=on_message)
    sender = ParleyClient(urls, token=setup.token, device_id=setup.sender_device)
    for client in (listener, sender):
        client.cursors[setup.conversation_id] = setup.last_seq  # hello with a cursor: no replay
    runs = [asyncio.create_task(client.run()) for client in (listener, sender)]
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(listener.ready.wait(), sender.ready.wait())
            sent_at = time.time()
            await sender.send(setup.conversation_id, f"canary {time.strftime('%H:%M:%S')}", client_msg_id=key)
            return await arrived - sent_at
    finally:
        for client in (listener, sender):
            await client.stop()
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)


def run_canary(*, urls: list[str] | None = None, timeout: float | None = None) -> float | None:
    """One canary run, recorded; returns the latency in seconds, or None if it failed."""
    urls = urls if urls is not None else settings.PARLEY_CANARY_URLS
    timeout = timeout if timeout is not None else settings.PARLEY_CANARY_TIMEOUT_SECONDS
    setup = ensure_canary()
    try:
        latency = asyncio.run(probe(setup, urls=urls, timeout=timeout))
    except Exception as error:  # noqa: BLE001 - any failure is the canary's finding
        metrics.CANARY_RUNS.labels(outcome="failed").inc()
        logger.warning("canary failed through %s: %r", ", ".join(urls), error)
        return None
    metrics.CANARY_RUNS.labels(outcome="ok").inc()
    metrics.CANARY_LATENCY.observe(latency)
    metrics.CANARY_LAST_SUCCESS.set(time.time())
    logger.info("canary delivered in %.1f ms", latency * 1000)
    return latency
