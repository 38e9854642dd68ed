"""Whose push endpoint it is (issue 16, item 2; docs/notifications.md, "Subscriptions").

An endpoint belongs to the device that registered it. Another user registering the same
endpoint is refused with 409 and changes nothing; the owner keeps getting their pushes. The
same user registering it under another of their devices moves it there (one browser profile,
one endpoint: the older device row is stale).
"""
from __future__ import annotations

import pytest

from notifications.models import PushSubscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(make_user, make_group):
    alice, bob = make_user("alice", display_name="Alice"), make_user("bob")
    return alice, bob, make_group(alice, [bob], title="Team")


def test_another_users_registration_of_an_endpoint_is_a_conflict_not_a_takeover(
        team, make_user, make_device, api, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob)
    mallory = make_user("mallory")
    hers = make_device(mallory)
    stolen = phone.as_json()
    stolen["keys"]["auth"] = "AAAAAAAAAAAAAAAAAAAAAA"  # keys of her own: bob's phone could no longer decrypt

    response = api.as_user(mallory).post(f"/api/v1/devices/{hers.pk}/push-subscription", stolen, format="json")

    assert response.status_code == 409 and response.json()["code"] == "conflict"
    kept = PushSubscription.objects.select_related("device").get(endpoint=phone.endpoint)
    assert kept.device.user == bob and kept.auth == phone.as_json()["keys"]["auth"]
    assert not PushSubscription.objects.filter(device=hers).exists()
    send(alice, conversation, body="for bob")
    worker.run()
    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: for bob"]


def test_the_same_user_registering_an_endpoint_on_another_device_moves_it(
        team, make_device, api, subscribe, send, worker, push_service):
    alice, bob, conversation = team
    phone = subscribe(bob, "phone")
    again = make_device(bob, name="phone, signed in again")

    response = api.as_user(bob).post(f"/api/v1/devices/{again.pk}/push-subscription", phone.as_json(),
                                     format="json")

    assert response.status_code == 201
    assert list(PushSubscription.objects.values_list("device", flat=True)) == [again.pk]
    send(alice, conversation, body="once")
    worker.run()
    assert [p["body"] for p in push_service.delivered(phone)] == ["Alice: once"]
