"""Fixtures for the offline path: a real local push service, VAPID keys, and a task queue.

Time does not pass in these tests. Celery work is queued by :class:`Worker` (which stands
in for the broker) with the countdown it was given, and runs only when a test calls
``worker.run()``: that call *is* "the burst window passed". Tasks run through Celery's own
``Task.apply`` (eager execution), so a retry runs at once and its countdown is recorded
from Celery's ``task_retry`` signal. Where a test needs older data (the sweep, the
staleness cut-off), :func:`age` moves a conversation's clock back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from celery.app.task import Task
from celery.signals import task_retry
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.cache import cache
from django.db.models import F

from notifications import markers

from .push_service import LocalPushService, b64url, public_point

SUBJECT = "mailto:ops@parley.test"


@pytest.fixture(scope="session")
def vapid_keys() -> tuple[str, str]:
    """(public, private) in the form `manage.py vapid_keys` prints them."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(public_point(key)), b64url(key.private_numbers().private_value.to_bytes(32, "big"))


@pytest.fixture(autouse=True)
def offline_path(settings, vapid_keys):
    public, private = vapid_keys
    settings.PARLEY_VAPID_PUBLIC_KEY = public
    settings.PARLEY_VAPID_PRIVATE_KEY = private
    settings.PARLEY_VAPID_SUBJECT = SUBJECT
    settings.PARLEY_PUSH_BURST_SECONDS = 5.0
    settings.PARLEY_PUSH_MAX_RETRIES = 2
    settings.PARLEY_PUSH_BACKOFF_BASE_SECONDS = 1.0
    settings.PARLEY_PUSH_BACKOFF_MAX_SECONDS = 60.0
    settings.PARLEY_PUSH_STALE_AFTER_SECONDS = 900
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Burst doorbells, presence counts and shown-notification markers live in the cache (and
    # the bursts this process opened in its memo of them).
    cache.clear()
    markers._open_until.clear()
    markers._local_due.clear()
    # Bursts start from the beat's parley.push.due, which Worker stands in for (the embedded
    # defaults' at-once burst has its own test).
    settings.CELERY_TASK_ALWAYS_EAGER = False
    yield
    cache.clear()
    markers._open_until.clear()
    markers._local_due.clear()


@pytest.fixture
def push_service(vapid_keys, settings):
    """The local push service; its plain-http origin on 127.0.0.1 is allowed for this test only
    (production settings refuse it: docs/security.md, "Push endpoints")."""
    with LocalPushService(vapid_public_key=vapid_keys[0], vapid_subject=SUBJECT) as service:
        settings.PARLEY_PUSH_INSECURE_TEST_ORIGINS = [service.origin]
        yield service


@dataclass
class Queued:
    task: Task
    args: tuple
    kwargs: dict[str, Any]
    countdown: float | None

    @property
    def name(self) -> str:
        return self.task.name


class Worker:
    """The broker and a worker in one: enqueued tasks wait here until :meth:`run`."""

    def __init__(self) -> None:
        self.queue: list[Queued] = []
        self.retry_countdowns: list[float] = []

    def names(self) -> list[str]:
        self.windows_pass()
        return [queued.name for queued in self.queue]

    def windows_pass(self) -> None:
        """Every open burst's window passes: the beat's parley.push.due starts them all."""
        from notifications.tasks import due

        due.apply(kwargs={"now": math.inf}).get()

    def run(self, *, only: str | None = None) -> None:
        """Work off the queue, and whatever the tasks enqueue, until empty (or none named
        ``only``): the burst windows open now pass first."""
        self.windows_pass()
        while True:
            queued = next((q for q in self.queue if only is None or q.name == only), None)
            if queued is None:
                return
            self.queue.remove(queued)
            queued.task.apply(queued.args, queued.kwargs).get()  # re-raises what the task raised

    def drop(self) -> None:
        """The broker loses everything in flight."""
        self.queue.clear()

    def take(self, name: str) -> Queued:
        """A worker takes the first task named ``name`` and is killed before it finishes: the
        task is gone from the queue, unacknowledged (see :meth:`redeliver`)."""
        queued = next(q for q in self.queue if q.name == name)
        self.queue.remove(queued)
        return queued

    def redeliver(self, queued: Queued) -> None:
        """The broker hands out a task it never got an ack for (the visibility timeout passed)."""
        self.queue.append(queued)


@pytest.fixture
def worker(monkeypatch):
    worker = Worker()

    def apply_async(task, args=None, kwargs=None, countdown=None, **options):
        worker.queue.append(Queued(task, tuple(args or ()), dict(kwargs or {}), countdown))

    def on_retry(sender=None, reason=None, **extra):
        worker.retry_countdowns.append(reason.when)

    monkeypatch.setattr(Task, "apply_async", apply_async)
    task_retry.connect(on_retry, weak=False)
    yield worker
    task_retry.disconnect(on_retry)


@pytest.fixture
def subscribe(api, make_device, push_service):
    """``subscribe(user)``: a new device of the user whose browser subscribes through the REST API."""

    def subscribe_(user, name="phone"):
        device = make_device(user, name=name)
        subscription = push_service.subscribe()
        response = api.as_user(user).post(f"/api/v1/devices/{device.pk}/push-subscription",
                                          subscription.as_json(), format="json")
        assert response.status_code == 201, response.content
        return subscription

    return subscribe_


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """Store a message through the write path and run what its commit schedules."""
    from messaging.send import do_send_message

    counter = iter(range(1, 10**9))

    def send_(sender, conversation, body="hello"):
        with django_capture_on_commit_callbacks(execute=True):
            return do_send_message(sender=sender, conversation_id=conversation.pk,
                                   client_msg_id=f"k{next(counter)}", body=body).message

    return send_


@pytest.fixture
def read(django_capture_on_commit_callbacks):
    """``read(user, conversation, seq)`` on some device of the user's, e.g. a laptop."""
    from receipts.watermarks import do_mark_read

    def read_(user, conversation, seq):
        with django_capture_on_commit_callbacks(execute=True):
            return do_mark_read(user=user, conversation_id=conversation.pk, seq=seq)

    return read_


def come_online(user) -> None:
    """A greeted socket of the user's opens on some gateway."""
    from messaging import presence

    presence.change_count(user.pk, 1)


def age(conversation, seconds: float) -> None:
    """Move a conversation's clock back: its messages, its last activity and its unfinished
    pushes (their leases) happened ``seconds`` earlier."""
    from messaging.models import Conversation, Message
    from notifications.models import PendingPush

    delta = timedelta(seconds=seconds)
    Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=F("last_activity_at") - delta)
    Message.objects.filter(conversation=conversation).update(created_at=F("created_at") - delta)
    PendingPush.objects.filter(conversation=conversation).update(
        created_at=F("created_at") - delta, lease_until=F("lease_until") - delta)
