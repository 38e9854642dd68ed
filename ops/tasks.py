"""Celery tasks of operations. Explicit names; ``parley.bulk.*`` runs on the bulk queue."""
from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import canary


@shared_task(name="parley.bulk.canary", ignore_result=True)
def canary_run() -> float | None:
    """Periodic (beat). No retry: the next run is the retry, and a late canary measures nothing."""
    if not settings.PARLEY_CANARY_URLS:
        return None
    return canary.run_canary()
