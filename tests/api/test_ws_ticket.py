from django.conf import settings
from django.test import override_settings

from messaging.tickets import redeem_ticket


def test_a_ticket_names_its_user_once(api, make_user):
    user = make_user()
    response = api.as_user(user).post("/api/v1/ws-ticket")
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == settings.PARLEY_WS_TICKET_TTL_SECONDS <= 60
    assert redeem_ticket(body["ticket"]) == user.pk
    assert redeem_ticket(body["ticket"]) is None


def test_every_ticket_is_new(api, make_user):
    client = api.as_user(make_user())
    first, second = (client.post("/api/v1/ws-ticket").json()["ticket"] for _ in range(2))
    assert first != second


def test_a_ticket_bound_to_a_device_only_opens_that_device(api, make_user, make_device):
    user = make_user()
    phone, laptop = make_device(user), make_device(user)
    client = api.as_user(user)
    ticket = client.post("/api/v1/ws-ticket", {"device": str(phone.pk)}, format="json").json()["ticket"]
    assert redeem_ticket(ticket, device_id=str(laptop.pk)) is None
    ticket = client.post("/api/v1/ws-ticket", {"device": str(phone.pk)}, format="json").json()["ticket"]
    assert redeem_ticket(ticket, device_id=phone.pk.hex.upper()) == user.pk


def test_a_ticket_cannot_be_bound_to_someone_elses_device(api, make_user, make_device):
    other_device = make_device(make_user())
    response = api.as_user(make_user()).post("/api/v1/ws-ticket", {"device": str(other_device.pk)}, format="json")
    assert response.status_code == 404


def test_unknown_or_malformed_tickets_redeem_to_nothing():
    assert redeem_ticket("never-issued") is None
    assert redeem_ticket("") is None
    assert redeem_ticket("has spaces and ünïcode") is None
    assert redeem_ticket("x" * 500) is None
    assert redeem_ticket(None) is None  # type: ignore[arg-type]


def test_tickets_need_authentication(api):
    assert api.post("/api/v1/ws-ticket").status_code == 401


@override_settings(PARLEY_RATE_WS_TICKET="2/m")
def test_tickets_are_rate_limited_per_user(api, make_user):
    client = api.as_user(make_user())
    assert [client.post("/api/v1/ws-ticket").status_code for _ in range(3)] == [200, 200, 429]


def test_of_many_threads_redeeming_one_ticket_exactly_one_gets_in(make_user):
    """The gateway redeems tickets on many database threads; on Redis one GETDEL decides."""
    from concurrent.futures import ThreadPoolExecutor

    from messaging.tickets import issue_ticket

    user = make_user()
    for _ in range(20):
        ticket, _ttl = issue_ticket(user_id=user.pk)
        with ThreadPoolExecutor(max_workers=8) as pool:
            winners = [r for r in pool.map(lambda _: redeem_ticket(ticket), range(8)) if r is not None]
        assert winners == [user.pk]
