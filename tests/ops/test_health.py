import asyncio

import pytest
from django.conf import settings
from django.test import override_settings

from ops import health

# Nothing listens on port 1, so this layer can never connect.
DEAD_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                          "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}


def parley_layer(*hosts: str) -> dict:
    return {"default": {"BACKEND": "chatproject.layers.RedisChannelLayer", "CONFIG": {"hosts": list(hosts)}}}


def test_healthz_answers_while_the_process_is_up(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_readyz_checks_the_database_and_the_channel_layer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}


@pytest.mark.django_db
def test_readyz_is_503_and_names_the_failed_check_when_the_channel_layer_is_down(client):
    with override_settings(CHANNEL_LAYERS=DEAD_LAYER, PARLEY_READYZ_TIMEOUT_SECONDS=1.0):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["channel_layer"].startswith("failed")


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_does_not_answer(client, monkeypatch):
    def unreachable():
        raise ConnectionError("database is down")

    monkeypatch.setitem(health.CHECKS, "database", unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "failed: ConnectionError", "channel_layer": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_while_the_gateway_drains_and_healthz_stays_up(client):
    health.draining.set()
    try:
        response = client.get("/readyz")
        assert (response.status_code, response.json()) == (503, {"status": "draining", "checks": {}})
        assert client.get("/healthz").status_code == 200
    finally:
        health.draining.clear()


def test_probes_only_answer_get(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
@pytest.mark.redis
def test_readyz_asks_every_redis_server_of_the_layer_and_names_the_layer_when_one_is_down(client):
    live = settings.CHANNEL_REDIS_URLS[0]
    with override_settings(CHANNEL_LAYERS=parley_layer(live, live), PARLEY_READYZ_TIMEOUT_SECONDS=1.0):
        assert client.get("/readyz").status_code == 200
    with override_settings(CHANNEL_LAYERS=parley_layer(live, "redis://127.0.0.1:1/0"),
                           PARLEY_READYZ_TIMEOUT_SECONDS=1.0):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["channel_layer"].startswith("failed")


@pytest.mark.django_db
@pytest.mark.redis
def test_readyz_does_not_wait_behind_the_processs_own_channel(client, monkeypatch):
    """A busy gateway's hub is seconds behind on its channel (a flood, a reconnect storm): a
    probe that waited there took busy gateways out of the balancer's rotation."""
    from chatproject.layers import RedisChannelLayer

    async def behind_the_backlog(self, channel):
        await asyncio.sleep(60)

    monkeypatch.setattr(RedisChannelLayer, "receive", behind_the_backlog)
    with override_settings(CHANNEL_LAYERS=parley_layer(settings.CHANNEL_REDIS_URLS[0]),
                           PARLEY_READYZ_TIMEOUT_SECONDS=0.5):
        response = client.get("/readyz")
    assert (response.status_code, response.json()["checks"]["channel_layer"]) == (200, "ok")
