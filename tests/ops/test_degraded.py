"""Degraded mode: hysteresis under injected signals and a clock the test moves; what it sheds and what never."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.core.cache import cache
from django.urls import reverse
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gateway.telemetry import ProcessCounts, SocketTelemetry
from messaging.send import do_send_message
from ops import degraded
from ops.degraded import RECEIPTS, TYPING, Window, evaluate, publish, read_signals
from ops.models import DegradedModeOverride
from ops.shedding import Hysteresis, Signals, State, Thresholds

from .conftest import Clock, settled, tick

T = Thresholds(device_timeout_share=0.2, device_timeout_share_exit=0.1, min_devices=20,
               queue_lag=10, queue_lag_exit=5, disconnect_ratio=0.10, disconnect_ratio_exit=0.05,
               min_disconnects=100, late_tick_ratio=0.2, late_tick_ratio_exit=0.05, min_late_ticks=2,
               corroborating_tick_ratio=0.1, escalate_after=10, calm_for=30)
# Two gateways over a 10 s window: 20 ticks, 6 of them in the last 3 s.
LAGGING = Signals(ticks=20, late_ticks=4, slow_ticks=4, recent_ticks=6, recent_late_ticks=3)
HOT = LAGGING
BETWEEN = Signals(ticks=20, late_ticks=1, slow_ticks=1, recent_ticks=6)  # 5% late: not under the exit ratio
CALM = Signals(ticks=20, recent_ticks=6)


def devices(*, acking: float, timing_out: float, lag: bool) -> Signals:
    """``acking`` devices with acks decided every second for 10 s, ``timing_out`` of them with a
    timeout each second; the servers lagging enough to corroborate, or not at all."""
    return Signals(acking_devices=int(acking * 10), timing_out_devices=int(timing_out * 10), devices=acking,
                   ticks=20, slow_ticks=4 if lag else 0, recent_ticks=6)


def levels(signals_each_second: list[Signals], state: State | None = None, start: float = 0.0) -> list[int]:
    clock = Clock(start)
    machine = Hysteresis(T, clock=clock, state=state)
    seen = []
    for signals in signals_each_second:
        seen.append(machine.observe(signals).level)
        clock.advance(1)
    return seen


# --- the state machine ----------------------------------------------------------------------------

def test_a_lagging_gateway_enters_level_one_at_once():
    state = Hysteresis(T, clock=Clock(0)).observe(LAGGING)
    assert (state.level, state.reasons) == (1, ("gateway_lag",))


def test_one_late_tick_is_a_stall_not_a_flood():
    assert levels([Signals(ticks=20, late_ticks=1, slow_ticks=1, recent_ticks=6, recent_late_ticks=1)] * 30) == [0] * 30


def test_queue_lag_alone_enters_too():
    assert Hysteresis(T, clock=Clock(0)).observe(Signals(queue_lag=10.5)).reasons == ("queue_lag",)


def test_devices_timing_out_enter_only_when_server_lag_corroborates_them():
    many_timing_out = devices(acking=100, timing_out=40, lag=False)
    assert levels([many_timing_out] * 60) == [0] * 60  # the network, not the servers: shedding would not help
    state = Hysteresis(T, clock=Clock(0)).observe(devices(acking=100, timing_out=40, lag=True))
    assert (state.level, state.reasons) == (1, ("ack_timeouts",))


def test_a_disconnect_spike_enters_only_when_server_lag_corroborates_it():
    spike = Signals(disconnects=150, connections=1000, ticks=20, recent_ticks=6)
    assert levels([spike] * 10) == [0] * 10
    assert Hysteresis(T, clock=Clock(0)).observe(replace(spike, slow_ticks=4)).reasons == ("disconnects",)


def test_ack_timeouts_count_devices_not_messages():
    """One device that stops acking leaves every frame it gets unacked: most of the messages, one
    device. The share of devices is what enters, however many frames each left."""
    one_silent_phone = Signals(acks_in_time=70, ack_timeouts=400, acking_devices=80, timing_out_devices=10,
                               devices=8, ticks=20, slow_ticks=20, recent_ticks=6)
    assert one_silent_phone.ack_timeout_ratio > 0.8 and one_silent_phone.device_timeout_share == 0.125
    assert levels([one_silent_phone] * 60) == [0] * 60


def test_devices_timing_out_need_the_minimum_device_count():
    """A small deployment: a third of five devices is still a few slow phones."""
    assert levels([devices(acking=19, timing_out=10, lag=True)] * 30) == [0] * 30
    assert levels([devices(acking=20, timing_out=10, lag=True)]) == [1]


@pytest.mark.parametrize("timing_out", [1, 2, 3])
def test_a_few_slow_devices_among_many_never_enter_even_on_a_lagging_server(timing_out):
    assert levels([devices(acking=30, timing_out=timing_out, lag=True)] * 60) == [0] * 60


def test_a_tick_lagging_over_the_thresholds_counts_as_slow_and_late(settings):
    settings.PARLEY_DEGRADED_CORROBORATING_LAG_MS = 250
    settings.PARLEY_DEGRADED_GATEWAY_LAG_MS = 500
    process = ProcessCounts()
    for lag in (0.01, 0.3, 0.6, 2.0):
        process.tick(lag)
    counts = process.window.take(sockets=0)
    assert (counts["ticks"], counts["slow_ticks"], counts["late_ticks"]) == (4, 3, 2)


def handle(process: ProcessCounts, *, frames: int, typing: int) -> None:
    process.handled(frames)
    for _ in range(typing):
        process.typing()


def test_a_tick_lagging_a_little_is_late_while_typing_is_most_of_the_work(settings):
    """What degraded mode sheds first is most of what the sockets handle, and the rest already
    waits for it: the lower line applies. Messages alone are judged by the higher one."""
    settings.PARLEY_DEGRADED_GATEWAY_LAG_MS = 500
    settings.PARLEY_DEGRADED_TYPING_LAG_MS = 50
    settings.PARLEY_DEGRADED_TYPING_SHARE = 0.5
    process = ProcessCounts()
    for frames, typing, lag in [(100, 50, 0.06),   # half typing, lagging 60 ms: late
                                (100, 49, 0.06),   # under half: not late
                                (100, 90, 0.04),   # mostly typing, lagging under the lower line
                                (100, 0, 0.4),     # messages only, under the higher line
                                (0, 0, 0.06),      # nothing handled
                                (100, 0, 0.6)]:    # messages only, over the higher line: late
        handle(process, frames=frames, typing=typing)
        process.tick(lag)
    assert process.window.take(sockets=0)["late_ticks"] == 2


def test_the_typing_share_is_counted_afresh_at_every_tick(settings):
    settings.PARLEY_DEGRADED_TYPING_LAG_MS = 50
    settings.PARLEY_DEGRADED_TYPING_SHARE = 0.5
    process = ProcessCounts()
    handle(process, frames=10, typing=10)
    process.tick(0.0)  # a flood's second, on time
    handle(process, frames=10, typing=0)
    process.tick(0.1)  # messages after it, lagging 100 ms: the flood's share is gone
    assert process.window.take(sockets=0)["late_ticks"] == 0
    assert process.take_typing_share() == 0.0


def test_frames_waiting_to_be_handled_count_as_lag_only_when_many_sockets_wait(settings):
    """A client that sends a burst waits behind its own frames; many sockets waiting at once is
    the server falling behind (a flood: frames queue faster than they are handled)."""
    settings.PARLEY_DEGRADED_INBOUND_MIN_SOCKETS = 3
    settings.PARLEY_DEGRADED_INBOUND_SOCKET_SHARE = 0.1
    process = ProcessCounts()
    for socket in range(40):
        process.inbound_wait(socket, 0.002)
    process.inbound_wait("bursty", 1.5)
    process.inbound_wait("bursty", 3.0)
    process.inbound_wait("another", 2.0)
    assert process.take_inbound_wait() == 0.002  # two sockets waited on themselves
    for socket in range(40):
        process.inbound_wait(socket, 0.7 + socket / 100)
    assert process.take_inbound_wait() == pytest.approx(1.06)  # the 4th longest: 10% of 40 sockets
    assert process.take_inbound_wait() == 0.0  # counting starts again
    process.inbound_wait("alone", 9.0)
    assert process.take_inbound_wait() == 0.0  # fewer sockets than the minimum


def test_staying_hot_climbs_to_deferring_receipts_after_the_escalation_delay():
    assert levels([HOT] * 12) == [1] * 10 + [2, 2]


def test_it_leaves_one_level_per_calm_period():
    at_two = State(level=2, since=0.0)
    seen = levels([CALM] * 62, state=at_two)
    assert seen[:30] == [2] * 30 and seen[30:60] == [1] * 30 and seen[60:] == [0, 0]


def test_a_signal_between_the_thresholds_neither_enters_nor_leaves():
    assert levels([BETWEEN] * 100) == [0] * 100
    assert levels([HOT] + [BETWEEN] * 100) == [1] * 101


def test_a_blip_during_the_calm_period_restarts_it():
    seen = levels([HOT] + [CALM] * 20 + [BETWEEN] + [CALM] * 31)
    assert seen.index(0) == 1 + 20 + 1 + 30


def test_signals_flapping_every_second_hold_level_one_without_flapping_the_mode():
    assert levels([HOT, CALM] * 50) == [1] * 100


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500), st.integers(0, 400), st.floats(0, 5)),
                min_size=1, max_size=60))
def test_without_server_lag_no_device_and_no_disconnect_ever_enters(seconds):
    """Whatever clients show (devices timing out, disconnects), quiet servers never shed."""
    signals = [Signals(acking_devices=acking * 10, timing_out_devices=min(out, acking) * 10, devices=acking,
                       disconnects=gone, connections=max(acking, 1), ticks=20, recent_ticks=6, queue_lag=queue_lag)
               for acking, out, gone, queue_lag in seconds]
    assert set(levels(signals)) == {0}


def test_no_level_sheds_messages_and_each_level_keeps_what_the_one_below_sheds():
    for lower, higher in zip(degraded.SHED_BY_LEVEL, degraded.SHED_BY_LEVEL[1:]):
        assert set(lower) < set(higher)
    assert set(degraded.SHED_BY_LEVEL[-1]) == {"typing", "presence", "receipts"}


# --- through the gateway's counts and the shared window, with a clock the test moves -------------

class Gateways:
    """Gateway processes as the runtime drives them: sockets that are written message frames and
    ack them (or not), and a tick a second that counts devices, publishes and evaluates."""

    def __init__(self, count: int, *, devices: int, phases: list[float] | None = None) -> None:
        self.monotonic = Clock(0.0)
        self.processes = [ProcessCounts() for _ in range(count)]
        self.phases = phases or [i / count for i in range(count)]
        self.sockets = [[SocketTelemetry(process, self.monotonic) for _ in range(devices // count)]
                        for process in self.processes]
        self.seq = 0
        self.adopted: dict[int, dict[float, int]] = {}  # gateway -> wall time of its tick -> level

    def message(self, *, silent: set[int] = frozenset()) -> None:
        """A message frame to every socket; all ack it within 50 ms but the ``silent`` ones."""
        self.seq += 1
        payload = {"seq": self.seq, "created_at": datetime.now(timezone.utc).isoformat()}
        everyone = [socket for sockets in self.sockets for socket in sockets]
        for socket in everyone:
            socket.wrote(1, [payload], path="direct")
        self.monotonic.advance(0.05)
        for index, socket in enumerate(everyone):
            if index not in silent:
                socket.acked(1, self.seq)

    def run(self, start: float, seconds: float, *, lag: Callable[[float], float] = lambda t: 0.0,
            silent: set[int] = frozenset()) -> list[tuple[float, int]]:
        """Ten messages a second; every gateway ticks once a second at its phase, ``lag(t)`` late.
        Returns (wall time, level) after each tick: the level that gateway adopts and tells its
        sockets (its tick publishes, evaluates and adopts, as the runtime's does)."""
        seen = []
        for second in range(int(seconds)):
            ticks = sorted((start + second + phase, index) for index, phase in enumerate(self.phases))
            for _ in range(10):
                self.message(silent=silent)
            for at, index in ticks:
                self.monotonic.advance(1 / len(ticks) - 0.5 / len(ticks))
                process = self.processes[index]
                process.devices(self.sockets[index], now=self.monotonic())
                process.tick(lag(at))
                publish(process.window.take(sockets=len(self.sockets[index])), now=at)
                state = evaluate(now=at, signals=read_signals(now=at, queue_lag=0.0))
                seen.append((at, state["level"]))
                self.adopted.setdefault(index, {})[at] = state["level"]
        return seen


@pytest.mark.django_db
def test_one_device_of_eight_that_stops_acking_never_enters_degraded_mode():
    gateways = Gateways(2, devices=8)
    seen = gateways.run(50_000.0, 120, silent={3})
    assert {level for _, level in seen} == {0}
    signals = read_signals(now=50_119.9, queue_lag=0.0)
    assert signals.device_timeout_share == pytest.approx(1 / 8, abs=0.02)
    assert signals.ack_timeout_ratio == pytest.approx(1 / 8, abs=0.02)


@pytest.mark.django_db
def test_one_silent_device_of_eight_on_a_lagging_server_still_does_not_enter_on_acks(settings):
    """The server lags enough to corroborate, but not to be late: the acks alone decide, and one
    device of eight is too few devices and too small a share."""
    settings.PARLEY_DEGRADED_CORROBORATING_LAG_MS = 250
    seen = Gateways(2, devices=8).run(60_000.0, 60, lag=lambda t: 0.3, silent={0})
    assert {level for _, level in seen} == {0}


def flood(began: float, ends: float) -> Callable[[float], float]:
    """A flood makes every tick from half a second after it began late: the loop wakes ticks
    late, and message events wait behind it."""
    return lambda t: 2.0 if began + 0.5 <= t < ends else 0.01


@hypothesis_settings(max_examples=12, deadline=None)
@given(gateways=st.integers(1, 3), phase=st.floats(0, 0.99), flood_at=st.floats(0, 0.99))
@pytest.mark.django_db
def test_a_flood_enters_within_three_seconds_whatever_the_gateways_phases(gateways, phase, flood_at):
    cache.clear()
    start = 70_000.0
    began = start + 12 + flood_at
    run = Gateways(gateways, devices=12, phases=[(phase + i / gateways) % 1 for i in range(gateways)])
    seen = run.run(start, 18, lag=flood(began, began + 60))
    assert all(level == 0 for at, level in seen if at < began)
    # Every gateway has adopted level 1 (and tells its sockets) by then; the last half second
    # is for the telling.
    for ticks in run.adopted.values():
        assert min(at for at, level in ticks.items() if level) - began <= 3.0 - 0.5


@pytest.mark.django_db
def test_a_flood_leaves_degraded_mode_one_calm_period_per_level_after_its_lag_left_the_window():
    start = 80_000.0
    began, ends = start + 5.3, start + 35.3
    seen = Gateways(2, devices=12).run(start, 140, lag=flood(began, ends))
    window, calm = django_settings.PARLEY_DEGRADED_WINDOW_SECONDS, django_settings.PARLEY_DEGRADED_CALM_SECONDS
    escalate = django_settings.PARLEY_DEGRADED_ESCALATE_SECONDS
    entered = min(at for at, level in seen if level)
    assert {level for at, level in seen if entered <= at < entered + escalate - 1} == {1}
    # Calm once the window holds at most one late tick (under the exit ratio): within 2 s of that.
    assert {level for at, level in seen if entered + escalate + 1 <= at < ends + window + calm - 2} == {2}
    assert {level for at, level in seen if ends + window + calm + 1 <= at < ends + window + 2 * calm - 2} == {1}
    assert {level for at, level in seen if at >= ends + window + 2 * calm + 1} == {0}


# --- shared across processes ---------------------------------------------------------------------

def test_gateways_add_their_counts_to_one_window_that_every_gateway_evaluates(db, settings):
    settings.PARLEY_DEGRADED_QUEUES = []
    first, second = Window(), Window()  # two gateway processes
    first.add("ticks")
    first.add("late_ticks")
    publish(first.take(sockets=10), now=5000.2)
    assert evaluate(now=5000.3)["level"] == 0  # one late tick: a stall
    second.add("ticks")
    second.add("late_ticks")
    second.add("acking_devices", 30)
    publish(second.take(sockets=30), now=5000.7)

    state = evaluate(now=5000.8)  # the second in progress counts at once
    assert state["level"] == 1 and tuple(state["auto"]["reasons"]) == ("gateway_lag",)
    assert state["signals"]["connections"] == pytest.approx(40 / settings.PARLEY_DEGRADED_WINDOW_SECONDS)
    assert state["signals"]["devices"] == pytest.approx(30 / settings.PARLEY_DEGRADED_WINDOW_SECONDS)
    assert evaluate(now=5001.1)["level"] == 1  # any gateway may evaluate, any time
    assert degraded.refresh() == degraded.Mode(level=1)
    assert degraded.sheds(TYPING) and not degraded.sheds(RECEIPTS)

    # Counts older than the window no longer count.
    late = evaluate(now=5000.2 + settings.PARLEY_DEGRADED_WINDOW_SECONDS + 1)
    assert late["signals"]["ticks"] == 0


def test_an_evaluation_in_progress_elsewhere_is_left_to_finish(db):
    cache.add(degraded.LOCK_KEY, "another gateway", 2)
    assert evaluate(now=6000.0, signals=HOT) is None
    cache.delete(degraded.LOCK_KEY)
    assert evaluate(now=6000.1, signals=HOT)["level"] == 1


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
