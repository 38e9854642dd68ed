"""How operations watch the domain without the domain knowing: the core's announcements and
the Celery tasks' outcomes become metrics (docs/operations.md, "Metrics").

Connected in ``OpsConfig.ready()``, in every process that writes or runs tasks:

* ``messaging.hooks.message_stored`` -> ``parley_messages_stored`` and the ``durable_write``
  stage (the storing transaction, commit included: receivers run right after the commit);
* the outcome of each ``parley.push.deliver`` run (Celery's ``task_postrun``, by the task's
  stable name) -> ``parley_push_deliveries``: its return value, or ``failed`` for an attempt
  that raised ``Retry``; a dead letter is a failed attempt too.
"""
from __future__ import annotations

import time
from typing import Any

from celery.signals import task_postrun

from messaging import hooks

from . import metrics

PUSH_DELIVER_TASK = "parley.push.deliver"
# What a deliver run's outcome adds to parley_push_deliveries, by label.
_PUSH_OUTCOMES = {"sent": ("sent",), "gone": ("gone",), "dead-letter": ("failed", "dead_letter")}


def on_message_stored(event: hooks.MessageStored) -> None:
    metrics.STAGE.labels(stage="durable_write").observe(time.perf_counter() - event.write_started)
    metrics.MESSAGES_STORED.inc()


def on_task_finished(sender: Any = None, retval: Any = None, state: str | None = None, **_: Any) -> None:
    if getattr(sender, "name", None) != PUSH_DELIVER_TASK:
        return
    outcomes = ("failed",) if state == "RETRY" else _PUSH_OUTCOMES.get(retval, ())
    for outcome in outcomes:
        metrics.PUSHES.labels(outcome=outcome).inc()


def connect() -> None:
    hooks.message_stored.connect(on_message_stored)
    task_postrun.connect(on_task_finished, weak=False, dispatch_uid="parley-push-outcomes")
