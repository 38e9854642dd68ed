"""Degraded mode: hysteresis under injected signals and a clock the test moves; what it sheds and what never."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from gateway.telemetry import ProcessCounts
from messaging.send import do_send_message
from ops import degraded
from ops.degraded import (
    RECEIPTS,
    TYPING,
    Signals,
    State,
    Thresholds,
    Window,
    evaluate,
    publish,
    step,
)
from ops.models import DegradedModeOverride

from .conftest import settled, tick

T = Thresholds(ack_timeout_ratio=0.02, ack_timeout_ratio_exit=0.01, min_acks=50, queue_lag=10, queue_lag_exit=5,
               disconnect_ratio=0.10, disconnect_ratio_exit=0.05, min_disconnects=100,
               late_tick_ratio=0.2, late_tick_ratio_exit=0.05, min_ticks=5,
               escalate_after=10, calm_for=30)
HOT = Signals(acks_in_time=950, ack_timeouts=50, connections=1000)       # 5% of acks late
BETWEEN = Signals(acks_in_time=985, ack_timeouts=15, connections=1000)   # 1.5%: under enter, over exit
CALM = Signals(acks_in_time=1000, connections=1000)


def levels(signals_each_second: list[Signals], state: State = State(), start: float = 0.0) -> list[int]:
    seen = []
    for second, signals in enumerate(signals_each_second):
        state = step(state, signals, start + second, T)
        seen.append(state.level)
    return seen


# --- the state machine --------------------------------------------------------------------------

def test_an_ack_timeout_ratio_over_two_percent_enters_level_one_at_once():
    state = step(State(), HOT, 0.0, T)
    assert (state.level, state.reasons) == (1, ("ack_timeouts",))


@pytest.mark.parametrize("signals, reason", [
    (Signals(queue_lag=10.5), "queue_lag"),
    (Signals(disconnects=150, connections=1000), "disconnects"),
    (Signals(ticks=20, late_ticks=5), "gateway_lag"),
])
def test_queue_lag_a_disconnect_spike_or_a_lagging_gateway_alone_enters_too(signals, reason):
    assert step(State(), signals, 0.0, T).reasons == (reason,)


def test_too_few_samples_are_no_signal_at_all():
    assert levels([Signals(acks_in_time=5, ack_timeouts=5), Signals(disconnects=60, connections=100),
                   Signals(ticks=4, late_ticks=4)]) == [0, 0, 0]


def test_a_tick_lagging_over_the_threshold_counts_as_a_late_tick(settings):
    settings.PARLEY_DEGRADED_GATEWAY_LAG_MS = 500
    process = ProcessCounts()
    for lag in (0.01, 0.2, 0.6, 2.0):
        process.tick(lag)
    counts = process.window.take(sockets=0)
    assert (counts["ticks"], counts["late_ticks"]) == (4, 2)


def test_staying_hot_climbs_to_deferring_receipts_after_the_escalation_delay():
    assert levels([HOT] * 12) == [1] * 10 + [2, 2]


def test_it_leaves_one_level_per_calm_period():
    at_two = State(level=2, since=0.0)
    seen = levels([CALM] * 62, state=at_two)
    assert seen[:30] == [2] * 30 and seen[30:60] == [1] * 30 and seen[60:] == [0, 0]


def test_a_ratio_between_the_thresholds_neither_enters_nor_leaves():
    assert levels([BETWEEN] * 100) == [0] * 100
    assert levels([HOT] + [BETWEEN] * 100) == [1] * 101


def test_a_blip_during_the_calm_period_restarts_it():
    seen = levels([HOT] + [CALM] * 20 + [BETWEEN] + [CALM] * 31)
    assert seen.index(0) == 1 + 20 + 1 + 30


def test_signals_flapping_every_second_hold_level_one_without_flapping_the_mode():
    assert levels([HOT, CALM] * 50) == [1] * 100


def test_no_level_sheds_messages_and_each_level_keeps_what_the_one_below_sheds():
    for lower, higher in zip(degraded.SHED_BY_LEVEL, degraded.SHED_BY_LEVEL[1:]):
        assert set(lower) < set(higher)
    assert set(degraded.SHED_BY_LEVEL[-1]) == {"typing", "presence", "receipts"}


# --- shared across processes ---------------------------------------------------------------------

def test_gateways_add_their_counts_to_one_window_and_one_evaluation_per_second_decides_for_all(db, settings):
    settings.PARLEY_DEGRADED_QUEUES = []
    settings.PARLEY_DEGRADED_MIN_ACKS = 50
    first, second = Window(), Window()  # two gateway processes
    first.add("acks_in_time", 100)
    publish(first.take(sockets=10), now=5000.2)
    second.add("ack_timeouts", 5)
    publish(second.take(sockets=30), now=5000.7)

    state = evaluate(now=5001.1)
    assert state["level"] == 1
    assert state["signals"]["ack_timeout_ratio"] == pytest.approx(5 / 105)
    assert state["signals"]["connections"] == pytest.approx(40 / settings.PARLEY_DEGRADED_WINDOW_SECONDS)
    assert evaluate(now=5001.9) is None  # another gateway already decided this second
    assert degraded.refresh() == degraded.Mode(level=1)
    assert degraded.sheds(TYPING) and not degraded.sheds(RECEIPTS)

    # Counts older than the window no longer count.
    assert evaluate(now=5000.2 + settings.PARLEY_DEGRADED_WINDOW_SECONDS + 1)["signals"]["acks_in_time"] == 0


# --- on the sockets -------------------------------------------------------------------------------

send = database_sync_to_async(do_send_message)
evaluate_async = database_sync_to_async(evaluate)


@pytest.mark.django_db(transaction=True)
async def test_degraded_mode_stops_typing_frames_but_never_messages_and_clients_are_told(trio, open_socket):
    group, [(alice, alice_phone), (bob, bob_phone), _] = trio
    a = await open_socket(alice, alice_phone)
    b = await open_socket(bob, bob_phone)
    await settled(a, b)
    t = 10_000.1
    await evaluate_async(now=t, signals=HOT)
    await tick(now=t + 0.2)  # the gateways adopt the shared state
    assert (await a.recv_type("degraded"))["shed"] == ["typing", "presence"]
    assert (await b.recv_type("degraded"))["shed"] == ["typing", "presence"]

    await a.send({"type": "typing", "conversation": group.pk})
    await a.send({"type": "send", "conversation": group.pk, "client_msg_id": "k1", "body": "still here"})
    assert (await b.recv_type("typing", "message"))["type"] == "message"
    assert await b.nothing()

    await evaluate_async(now=t + 1, signals=CALM)
    await evaluate_async(now=t + 31, signals=CALM)
    await tick(now=t + 31.5)
    assert (await b.recv_type("degraded"))["shed"] == []
    await a.send({"type": "typing", "conversation": group.pk})
    assert (await b.recv_type("typing"))["user"] == alice.pk


@pytest.mark.django_db(transaction=True)
async def test_receipt_broadcasts_wait_at_level_two_and_go_out_with_the_latest_marks_when_it_ends(
        trio, open_socket, settings):
    settings.PARLEY_RECEIPT_COALESCE_MS = 0
    group, [(alice, alice_phone), (bob, bob_phone), _] = trio
    for i in range(2):
        await send(sender=alice, conversation_id=group.pk, client_msg_id=f"k{i}", body=f"{i}")
    a = await open_socket(alice, alice_phone)
    b = await open_socket(bob, bob_phone)
    await settled(a, b)
    t = 20_000.1
    await evaluate_async(now=t, signals=HOT)
    await evaluate_async(now=t + 10, signals=HOT)
    await tick(now=t + 10.5)
    assert (await a.recv_type("degraded"))["shed"] == ["typing", "presence", "receipts"]

    for seq in (1, 2):
        await b.send({"type": "read", "conversation": group.pk, "seq": seq})
    await b.send({"type": "ping"})
    await b.recv_type("pong")
    assert await a.nothing()  # stored, not broadcast

    await evaluate_async(now=t + 11, signals=CALM)
    await evaluate_async(now=t + 41, signals=CALM)
    await tick(now=t + 41.5)
    assert (await a.recv_type("degraded"))["shed"] == ["typing", "presence"]
    receipt = await a.recv_type("receipt")
    assert (receipt["user"], receipt["read_seq"], receipt["delivered_seq"]) == (bob.pk, 2, 2)
    assert await a.nothing()  # one frame with the latest marks, not one per read


@pytest.mark.django_db(transaction=True)
async def test_a_client_saying_hello_while_degraded_is_told_after_ready(trio, open_socket):
    group, [_, _, (carol, carol_phone)] = trio
    await evaluate_async(now=30_000.1, signals=HOT)
    await tick(now=30_000.5)
    c = await open_socket(carol, carol_phone, hello=False)
    await c.hello()
    assert (await c.recv_type("degraded"))["shed"] == ["typing", "presence"]


def test_the_admin_override_forces_a_level_and_auto_hands_control_back(admin_client, admin_user, metrics):
    DegradedModeOverride.objects.get_or_create(pk=1)
    url = reverse("admin:ops_degradedmodeoverride_change", args=[1])
    assert "level 0 (automatic)" in admin_client.get(url).content.decode()

    assert admin_client.post(url, {"mode": "normal", "note": "false alarm"}).status_code == 302
    assert evaluate(now=40_000.1, signals=HOT)["level"] == 0  # hot, but forced normal
    assert degraded.refresh() == degraded.Mode(level=0, forced=True)
    override = DegradedModeOverride.objects.get(pk=1)
    assert (override.mode, override.note, override.updated_by) == ("normal", "false alarm", admin_user)

    admin_client.post(url, {"mode": "defer_receipts", "note": "load test"})
    assert evaluate(now=40_001.1, signals=CALM)["level"] == 2
    degraded.refresh()
    assert metrics.value("parley_degraded_level") == 2 and metrics.value("parley_degraded_forced") == 1
    assert "level 2 (forced)" in admin_client.get(url).content.decode()

    admin_client.post(url, {"mode": "auto"})
    # The automatic state was tracked all along: hot at 40000, calm since 40001, hot again.
    state = evaluate(now=40_002.1, signals=HOT)
    assert (state["level"], state["forced"]) == (1, False)
