"""Database connections under a burst, on one real gateway process (DESIGN 13: pooled per
process, for REST and the gateway alike; docs/operations.md, "Database connections").

Daphne runs each HTTP request's sync code on a thread of its own; with a connection per
thread, a burst of new users opens a connection per request in flight and PostgreSQL refuses
the rest ("too many clients already": 500s). With the pool, requests beyond its size wait for
a connection, and PostgreSQL never sees more backends from the process than the pool allows.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from messaging.conversations import do_create_group
from messaging.models import Conversation, Message
from tests.live import Gateway, redis_server, service_env  # noqa: F401 - redis_server: fixture

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

USERS = 300
POOL = 8  # PARLEY_DB_POOL_MAX_SIZE of the gateway under test
APPLICATION = "parley-burst-gateway"


def call(base: str, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(f"{base}{path}", method="POST", data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read().decode(errors="replace")[:300]}
    except OSError as error:  # refused or reset: as much a failure as a 500
        return 0, {"error": repr(error)}


class BackendCounter:
    """Samples pg_stat_activity from the maintenance database: the most backends of the
    gateway under test (its connections carry APPLICATION as their application_name) seen on
    the test database at once."""

    def __init__(self) -> None:
        self.most = 0
        self._stop = threading.Event()
        db = settings.DATABASES["default"]
        self.conninfo = psycopg.conninfo.make_conninfo(
            host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
            password=db["PASSWORD"] or None, dbname="postgres")
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def count(self, admin: psycopg.Connection) -> int:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' "
            "AND application_name = %s", [connection.settings_dict["NAME"], APPLICATION]).fetchone()[0]

    def _sample(self) -> None:
        with closing(psycopg.connect(self.conninfo, autocommit=True)) as admin:
            while not self._stop.is_set():
                self.most = max(self.most, self.count(admin))
                time.sleep(0.02)

    def __enter__(self) -> BackendCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_burst_of_new_users_signing_up_registering_devices_and_sending_gets_no_500_within_the_pool(
    make_user, redis_server,
):
    owner = make_user("owner")
    channel = do_create_group(creator=owner, title="lobby", member_ids=[], kind=Conversation.Kind.CHANNEL,
                              public=True).conversation
    gateway = Gateway(redis_server.url, extra_env={
        "DATABASE_URL": f"{service_env(redis_server.url)['DATABASE_URL']}?application_name={APPLICATION}",
        "DJANGO_SETTINGS_MODULE": "tests.live_settings",
        "PARLEY_DB_POOL_MAX_SIZE": str(POOL),
        "PARLEY_RATE_SIGNUP": "1000000/h",
    })
    gateway.start()
    start = threading.Barrier(USERS)

    def new_user(n: int) -> list[tuple[str, int, dict]]:
        steps: list[tuple[str, int, dict]] = []
        start.wait(60)  # every signup in flight at once
        status, body = call(gateway.url, "/api/v1/auth/signup", {"username": f"burst{n}", "password": "pw-Parley-123"})
        steps.append(("signup", status, body))
        if status != 201:
            return steps
        token = body["token"]
        for step, path, payload in (
            ("device", "/api/v1/devices", {"name": "phone"}),
            ("join", f"/api/v1/conversations/{channel.pk}/join", {}),
            ("send", f"/api/v1/conversations/{channel.pk}/messages", {"client_msg_id": f"hello-{n}", "body": "hi"}),
        ):
            status, body = call(gateway.url, path, payload, token)
            steps.append((step, status, body))
        return steps

    try:
        with BackendCounter() as backends, ThreadPoolExecutor(max_workers=USERS) as pool:
            outcomes = [step for steps in pool.map(new_user, range(USERS)) for step in steps]
    finally:
        log = gateway.stop()

    failed = [(step, status, body) for step, status, body in outcomes if not 200 <= status < 300]
    assert failed == [], f"{len(failed)} failed, e.g. {failed[:3]}\n{log[-2000:]}"
    assert len(outcomes) == 4 * USERS
    assert Message.objects.filter(conversation=channel).count() == USERS
    assert 0 < backends.most <= POOL, f"{backends.most} backends for a pool of {POOL}"


def test_a_request_that_waits_too_long_for_a_pooled_connection_is_told_to_retry_not_a_500(
    make_user, make_group, redis_server,
):
    """Past PARLEY_DB_POOL_TIMEOUT_SECONDS waiting for a connection, a request gets 503
    ``unavailable`` with ``Retry-After`` (overload, not a fault); its retry is served."""
    from rest_framework.authtoken.models import Token

    alice = make_user("alice")
    group = make_group(alice, [make_user("bob")])
    token = Token.objects.create(user=alice).key
    gateway = Gateway(redis_server.url, extra_env={
        "PARLEY_DB_POOL_MIN_SIZE": "1", "PARLEY_DB_POOL_MAX_SIZE": "1", "PARLEY_DB_POOL_TIMEOUT_SECONDS": "0.01",
    })
    gateway.start()

    def send(n: int) -> tuple[int, dict, str | None]:
        request = urllib.request.Request(
            f"{gateway.url}/api/v1/conversations/{group.pk}/messages", method="POST",
            data=json.dumps({"client_msg_id": f"k{n}", "body": "hi"}).encode(),
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read()), None
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                return error.code, json.loads(body or b"{}"), error.headers.get("Retry-After")
            except ValueError:  # Django's HTML 500 page
                return error.code, {"page": body.decode(errors="replace")[:200]}, None

    try:
        with ThreadPoolExecutor(max_workers=60) as pool:
            outcomes = list(pool.map(send, range(60)))
        refused = [n for n, (status, _, _) in enumerate(outcomes) if status == 503]
        retried = [send(n) for n in refused[:3]]  # the same client_msg_id, once the burst is over
    finally:
        log = gateway.stop()
    assert {status for status, _, _ in outcomes} <= {201, 503}, f"{outcomes}\n{log[-2000:]}"
    assert refused, "the pool never ran out: the test proves nothing"
    assert all(body["code"] == "unavailable" and retry_after == "1"
               for status, body, retry_after in outcomes if status == 503)
    assert all(status == 201 for status, _, _ in retried)
    assert Message.objects.filter(conversation=group).count() == 60 - len(refused) + len(retried)
