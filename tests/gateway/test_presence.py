"""Presence counts across gateways: what the offline path trusts to decide 'online'."""
from django.core.cache import cache

from messaging.gateway import presence


def test_a_user_is_online_while_any_socket_is_counted_and_offline_after_the_last(settings):
    cache.clear()
    presence._change_count(7, 1)
    presence._change_count(7, 1)
    presence._change_count(7, -1)
    assert presence.online_user_ids([7, 8]) == {7}
    presence._change_count(7, -1)
    assert presence.online_user_ids([7]) == set()


def test_a_count_never_goes_negative():
    cache.clear()
    assert presence._change_count(9, -1) == 0
    assert presence._change_count(9, 1) == 1


def test_counts_left_by_a_crashed_gateway_expire_unless_a_live_gateway_refreshes_them(settings, monkeypatch):
    cache.clear()
    settings.PARLEY_PRESENCE_REFRESH_SECONDS = 0.5  # counts live 1.5 s
    presence._change_count(5, 1)  # a socket on a gateway that then dies without decrementing
    presence._change_count(6, 1)  # a socket whose gateway keeps refreshing
    import time

    for _ in range(4):
        time.sleep(0.5)
        presence.refresh([6])
    assert presence.online_user_ids([5, 6]) == {6}
