import base64
import uuid

import pytest
from django.test import override_settings

from messaging import layer
from notifications.models import PushSubscription

P256DH = base64.urlsafe_b64encode(b"\x04" + bytes(range(64))).decode().rstrip("=")
AUTH = base64.urlsafe_b64encode(bytes(range(16))).decode().rstrip("=")


# Where pushes may go is tested in tests/notifications/test_endpoints.py. Here the endpoints are
# on a local test push service's origin, which production settings refuse and tests allow.
TEST_ORIGIN = "http://127.0.0.1:8999"


def subscription(endpoint=f"{TEST_ORIGIN}/send/abc", p256dh=P256DH, auth=AUTH):
    return {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}}


@pytest.fixture
def local_push_origin(settings):
    settings.PARLEY_PUSH_INSECURE_TEST_ORIGINS = [TEST_ORIGIN]


def test_registering_a_device_returns_its_uuid(api, make_user):
    response = api.as_user(make_user()).post("/api/v1/devices", {"name": "Firefox", "platform": "web"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert uuid.UUID(body["id"])
    assert (body["name"], body["platform"]) == ("Firefox", "web")


def test_a_device_needs_no_name(api, make_user):
    assert api.as_user(make_user()).post("/api/v1/devices", {}, format="json").status_code == 201


@pytest.mark.parametrize("payload, field", [({"name": 5}, "name"), ({"platform": "p" * 51}, "platform")])
def test_device_fields_are_strict(api, make_user, payload, field):
    response = api.as_user(make_user()).post("/api/v1/devices", payload, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]


def test_listing_shows_only_my_devices(api, make_user, make_device):
    me = make_user()
    mine = make_device(me)
    make_device(make_user())
    response = api.as_user(me).get("/api/v1/devices")
    assert [d["id"] for d in response.json()] == [str(mine.pk)]


@override_settings(PARLEY_MAX_DEVICES_PER_USER=2)
def test_registering_beyond_the_device_limit_is_a_conflict(api, make_user):
    client = api.as_user(make_user())
    codes = [client.post("/api/v1/devices", {}, format="json").status_code for _ in range(3)]
    assert codes == [201, 201, 409]


def test_deleting_a_device_closes_its_sockets(api, make_user, make_device, listen,
                                              django_capture_on_commit_callbacks):
    me = make_user()
    device = make_device(me)
    sockets = listen(layer.device_group(device.pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert api.as_user(me).delete(f"/api/v1/devices/{device.pk}").status_code == 204
    event = sockets.next()
    assert (event["type"], event["code"]) == ("socket.close", 4403)
    assert api.get("/api/v1/devices").json() == []


@pytest.mark.parametrize("which", ["someone_elses", "unknown", "not_a_uuid"])
def test_deleting_a_device_that_is_not_mine_is_a_404(api, make_user, make_device, which):
    others = make_device(make_user())
    device_id = {"someone_elses": others.pk, "unknown": uuid.uuid4(), "not_a_uuid": "abc"}[which]
    response = api.as_user(make_user()).delete(f"/api/v1/devices/{device_id}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_a_push_subscription_is_stored_then_replaced(api, make_user, make_device, local_push_origin):
    me = make_user()
    device = make_device(me)
    client = api.as_user(me)
    url = f"/api/v1/devices/{device.pk}/push-subscription"
    first = client.post(url, subscription(), format="json")
    assert first.status_code == 201
    assert first.json()["endpoint"] == f"{TEST_ORIGIN}/send/abc"
    again = client.post(url, subscription(endpoint=f"{TEST_ORIGIN}/send/new"), format="json")
    assert again.status_code == 200
    assert PushSubscription.objects.get(device=device).endpoint == f"{TEST_ORIGIN}/send/new"


def test_an_endpoint_moves_to_the_device_that_registers_it_last(api, make_user, make_device, local_push_origin):
    me = make_user()
    old, new = make_device(me), make_device(me)
    client = api.as_user(me)
    client.post(f"/api/v1/devices/{old.pk}/push-subscription", subscription(), format="json")
    client.post(f"/api/v1/devices/{new.pk}/push-subscription", subscription(), format="json")
    assert list(PushSubscription.objects.values_list("device", flat=True)) == [new.pk]


def test_a_push_subscription_can_be_removed(api, make_user, make_device, local_push_origin):
    me = make_user()
    device = make_device(me)
    client = api.as_user(me)
    url = f"/api/v1/devices/{device.pk}/push-subscription"
    client.post(url, subscription(), format="json")
    assert client.delete(url).status_code == 204
    assert client.delete(url).status_code == 404


def test_plain_http_push_endpoints_are_accepted_only_from_a_test_push_service(api, make_user, make_device, settings):
    me = make_user()
    device = make_device(me)
    client = api.as_user(me)
    url = f"/api/v1/devices/{device.pk}/push-subscription"
    local = subscription(endpoint="http://127.0.0.1:8999/push")
    assert client.post(url, local, format="json").status_code == 400  # production settings refuse it
    settings.PARLEY_PUSH_INSECURE_TEST_ORIGINS = [TEST_ORIGIN]
    assert client.post(url, local, format="json").status_code == 201
    refused = client.post(url, subscription(endpoint="http://push.example.com/send"), format="json")
    assert refused.status_code == 400
    assert refused.json()["fields"]["endpoint"] == ["Must be an https URL."]


@pytest.mark.parametrize("payload, field", [
    (subscription(endpoint="not a url"), "endpoint"),
    (subscription(endpoint="ftp://push.example.com/x"), "endpoint"),
    (subscription(endpoint="https://push.example.com/" + "x" * 500), "endpoint"),
    (subscription(endpoint=42), "endpoint"),
    (subscription(p256dh=AUTH), "keys.p256dh"),
    (subscription(p256dh="!!" + P256DH[2:]), "keys.p256dh"),
    (subscription(auth=P256DH), "keys.auth"),
    ({"endpoint": "https://push.example.com/x"}, "keys"),
    ({"endpoint": "https://push.example.com/x", "keys": "k"}, "keys.non_field_errors"),
])
def test_bad_push_subscriptions_are_400_with_field_errors(api, make_user, make_device, payload, field):
    me = make_user()
    device = make_device(me)
    response = api.as_user(me).post(f"/api/v1/devices/{device.pk}/push-subscription", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_a_push_subscription_for_someone_elses_device_is_a_404(api, make_user, make_device):
    others = make_device(make_user())
    response = api.as_user(make_user()).post(f"/api/v1/devices/{others.pk}/push-subscription", subscription(),
                                             format="json")
    assert response.status_code == 404
    assert not PushSubscription.objects.exists()
