"""A push endpoint is no way into our network (issue 16, item 1; docs/security.md, "Push endpoints").

The endpoint is the one URL a client makes the server POST to. It must be https, on a push
service of the allow-list, and resolve to public addresses: when it is registered, and again
at every attempt, where the checked address is the one connected to (a name that resolves
elsewhere meanwhile is never contacted). Redirects are not followed, the push service's answer
is read only up to a small budget and within a time budget, and none of its text is stored.
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from notifications.endpoints import host_allowed
from notifications.models import PushDeadLetter, PushSubscription

from .conftest import SUBJECT
from .push_service import LocalPushService

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user, make_group):
    alice, bob = make_user("alice", display_name="Alice"), make_user("bob")
    return alice, bob, make_group(alice, [bob], title="Team")


@pytest.fixture
def register(api, make_user, make_device):
    """``register(endpoint)``: a new device of a new user posts a subscription with this endpoint."""

    def register_(endpoint):
        from .push_service import b64url

        user = make_user()
        device = make_device(user)
        keys = {"p256dh": b64url(b"\x04" + bytes(range(64))), "auth": b64url(bytes(range(16)))}
        return api.as_user(user).post(f"/api/v1/devices/{device.pk}/push-subscription",
                                      {"endpoint": endpoint, "keys": keys}, format="json")

    return register_


def eventually(predicate, seconds: float = 5.0):
    """The local push service answers on its own threads: wait until they have recorded it."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "the push service did not record it in time"
        time.sleep(0.01)


# --- At registration ------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:8999/push/x",  # plain http to a port of this machine
    "http://localhost:6379/push/x",
    "https://127.0.0.1/push/x",
    "https://10.0.0.7/push/x",
    "https://169.254.169.254/latest/meta-data/",  # the cloud metadata service
    "https://[::1]/push/x",
    "https://intranet.example/push/x",  # no browser's push service
    "https://fcm.googleapis.com.evil.example/fcm/send/x",  # a look-alike
    "https://fcm.googleapis.com:8443/fcm/send/x",  # a push service's host, another port
    "https://user:pw@fcm.googleapis.com/fcm/send/x",
])
def test_an_endpoint_off_the_browsers_push_services_is_refused_at_registration(register, endpoint):
    response = register(endpoint)

    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == ["endpoint"]
    assert not PushSubscription.objects.exists()


@pytest.mark.parametrize("endpoint", [
    "https://10.0.0.7/push/x", "https://172.16.5.4/push/x", "https://192.168.1.1/push/x",
    "https://100.64.0.1/push/x", "https://169.254.169.254/push/x", "https://0.0.0.0/push/x",
    "https://[::ffff:127.0.0.1]/push/x", "https://[fd00::1]/push/x", "https://[fe80::1]/push/x",
    "https://localhost/push/x",  # a name: resolved, and it points at this machine
])
def test_with_every_host_allowed_an_endpoint_must_still_resolve_to_public_addresses(register, settings, endpoint):
    settings.PARLEY_PUSH_ALLOWED_HOSTS = ["*"]

    response = register(endpoint)

    assert response.status_code == 400, response.content
    assert response.json()["fields"]["endpoint"] == ["Must resolve to public internet addresses only."]


def test_with_every_host_allowed_a_public_address_is_accepted(register, settings):
    settings.PARLEY_PUSH_ALLOWED_HOSTS = ["*"]
    assert register("https://93.184.216.34/push/x").status_code == 201


@pytest.mark.parametrize("host, allowed", [
    ("fcm.googleapis.com", True),  # Chrome, Chromium-based browsers
    ("updates.push.services.mozilla.com", True),  # Firefox
    ("wns2-par02p.notify.windows.com", True),  # Edge on Windows
    ("web.push.apple.com", True),  # Safari
    ("FCM.googleapis.com.", True),
    ("notify.windows.com", False),  # a wildcard needs a label in front
    ("xfcm.googleapis.com", False),
    ("fcm.googleapis.com.evil.example", False),
    ("push.apple.com.evil.example", False),
    ("127.0.0.1", False),
])
def test_the_default_allow_list_names_the_browsers_push_services(host, allowed):
    assert host_allowed(host) is allowed


# --- At every attempt -----------------------------------------------------------------------

@pytest.fixture
def stored_subscription(team, make_device, push_service):
    """``stored_subscription(endpoint_of)``: a subscription of bob's already in the table, with
    an endpoint made from the local service's port and a subscription token."""

    def store(endpoint_of):
        _, bob, _ = team
        browser = push_service.subscribe()
        port = urlsplit(push_service.origin).port
        keys = browser.as_json()["keys"]
        PushSubscription.objects.create(device=make_device(bob), endpoint=endpoint_of(port, browser.token),
                                        p256dh=keys["p256dh"], auth=keys["auth"])
        return browser

    return store


@pytest.mark.parametrize("case", ["rebound", "stored before the rules"])
def test_an_endpoint_that_now_leads_to_a_private_address_is_never_contacted(
        team, stored_subscription, send, worker, push_service, settings, case):
    alice, bob, conversation = team
    if case == "rebound":
        # Registered while the name resolved to a public address; now it resolves to 127.0.0.1.
        settings.PARLEY_PUSH_ALLOWED_HOSTS = ["localhost"]
        stored_subscription(lambda port, token: f"https://localhost:{port}/push/{token}")
    else:
        # Plain http to this machine, as registrations were once accepted (not a test origin here).
        stored_subscription(lambda port, token: f"http://127.0.0.1:{port}/push/{token}")
        settings.PARLEY_PUSH_INSECURE_TEST_ORIGINS = []

    send(alice, conversation)
    worker.run()

    assert push_service.connections == 0
    assert worker.retry_countdowns == []  # refused for good: not retried
    (letter,) = PushDeadLetter.objects.all()
    assert letter.attempts == 1 and letter.last_error.startswith("refused before sending:")
    assert PushSubscription.objects.filter(device__user=bob).exists()  # an operator decides


def test_a_redirect_is_not_followed(team, subscribe, send, worker, push_service, vapid_keys):
    alice, bob, conversation = team
    with LocalPushService(vapid_public_key=vapid_keys[0], vapid_subject=SUBJECT) as internal:
        phone = subscribe(bob)
        internal_browser = internal.subscribe()
        push_service.respond_with(307, headers={"Location": f"{internal.origin}/push/{internal_browser.token}"})
        send(alice, conversation)
        worker.run()

    assert internal.connections == 0
    assert push_service.attempts() == [307]
    (letter,) = PushDeadLetter.objects.all()
    assert "307" in letter.last_error and internal.origin not in letter.last_error
    assert PushSubscription.objects.filter(device__user=bob).exists()
    assert push_service.delivered(phone) == []


def test_no_text_of_the_push_services_answer_is_stored(team, subscribe, send, worker, push_service, admin_client):
    alice, bob, conversation = team
    subscribe(bob)
    push_service.respond_with(400, body=b"upstream 10.1.2.3:5432 said: password authentication failed for hunter2")
    send(alice, conversation)
    worker.run()

    (letter,) = PushDeadLetter.objects.all()
    assert letter.last_error == "push service answered 400"
    assert "hunter2" not in str(PushDeadLetter.objects.values().get())


def test_only_a_small_part_of_a_large_answer_is_read(team, subscribe, send, worker, push_service, settings):
    alice, bob, conversation = team
    phone = subscribe(bob)
    size = 64 * 2**20
    push_service.respond_with(201, body=b"x" * size)
    send(alice, conversation, body="hi")
    worker.run()

    eventually(lambda: push_service.body_bytes_sent)
    (taken,) = push_service.body_bytes_sent
    assert taken < size / 4  # the rest was never read: the connection was closed on it
    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: hi"]


def test_a_push_service_that_keeps_us_waiting_is_cut_off_at_the_time_budget(
        team, subscribe, send, worker, push_service, settings):
    alice, bob, conversation = team
    settings.PARLEY_PUSH_TIMEOUT_SECONDS = 0.5
    subscribe(bob)
    push_service.respond_slowly(4.0)  # every header byte comes well within the per-read timeout
    send(alice, conversation)

    started = time.monotonic()
    worker.run()
    elapsed = time.monotonic() - started

    assert elapsed < 2.5
    assert len(worker.retry_countdowns) == 1  # the slow attempt counted as failed, and was retried
    assert push_service.attempts() == [201, 201]
