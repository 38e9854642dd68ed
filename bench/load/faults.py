"""The issue-7 scenarios with faults: chaos (SIGKILL a gateway, restart a Redis, kill the
worker, under load) and degraded (a typing flood until the gateways shed), each beside the relay
under the same faults or flood.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from bench.load import metrics
from bench.load.recorder import Recorder
from bench.load.relayclients import RelayPool, RelaySocket
from bench.load.session import (
    GATEWAYS,
    PAD,
    Session,
    connect_pool,
    drain,
    final_check,
    fmt,
    make_cohort,
    offer,
    run_relay_phases,
    senders_round_robin,
    series,
    settle,
)

# --- chaos --------------------------------------------------------------------------------------------

async def chaos(session: Session, args) -> dict[str, Any]:
    groups, size = 20, 10
    duration = 60.0 if not args.quick else 30.0
    plan = [(0.17, "kill gateway1"), (0.22, "start gateway1"), (0.42, "restart redis2"),
            (0.67, "kill worker"), (0.72, "start worker")]
    tag = f"ch{next(session.prefix)}u"
    members, seqs = await asyncio.to_thread(make_cohort, tag, groups, size, True)
    recorder = Recorder()
    pool, devices, connect_s = await connect_pool(session, recorder, members, seqs)
    channel = devices[0].conversations[1]
    print(f"  parley: {len(devices)} devices (20 groups of 10 + a channel of 200) ready in {connect_s:.1f}s", flush=True)
    rate = args.chaos_rate
    phase = recorder.phase("chaos-groups", rate)
    chan_phase = recorder.phase("chaos-channel", 1)
    senders = senders_round_robin(devices, lambda d: d.conversations[0])
    chan_senders = itertools.cycle(devices[:20])
    events: list[tuple[float, str]] = []
    t0 = time.monotonic()
    wall0 = time.time()

    async def faults() -> None:
        for at, what in plan:
            await asyncio.sleep(max(0.0, t0 + at * duration - time.monotonic()))
            verb, name = what.split()
            if verb == "kill":
                await asyncio.to_thread(session.stack.kill, name)
            elif verb == "start":
                await asyncio.to_thread(session.stack.start, name)
            else:
                await asyncio.to_thread(session.stack.restart, name, 1.0)
            events.append((round(time.monotonic() - t0, 1), what))
            print(f"    t={time.monotonic() - t0:.1f}s {what}", flush=True)

    def send() -> None:
        dev, conv, n = next(senders)
        pool.send(dev, conv, phase, PAD, n)

    async def channel_load() -> None:
        await offer(1.0, duration, chan_phase, lambda: pool.send(next(chan_senders), channel, chan_phase, PAD, 200))

    fault_task = asyncio.get_running_loop().create_task(faults())
    chan_task = asyncio.get_running_loop().create_task(channel_load())
    await offer(rate, duration, phase, send)
    await fault_task
    await chan_task
    check = await final_check(pool, devices, wait=90)
    phase_rows = [p.summary() for p in (phase, chan_phase)]
    reconnects = sum(d.connections for d in devices) - len(devices)
    await pool.stop()
    print(f"  parley check: {check}", flush=True)
    for row in phase_rows:
        print("   ", fmt(row), flush=True)
    # The relay under the same faults (a relay daphne SIGKILLed, Redis restarted): what is lost.
    relay_recorder = Recorder()
    relay = RelayPool(session.relay.urls, relay_recorder)
    sockets = [RelaySocket(i, c) for i, c in enumerate(c for c in seqs if c != channel for _ in range(size))]
    await relay.connect(sockets)
    rphase = relay_recorder.phase("relay-chaos", rate)
    rsenders = itertools.cycle(sorted(sockets, key=lambda s: (s.index % size, s.room)))
    rduration = duration * 0.6
    relay_events = []
    rt0 = time.monotonic()

    async def relay_faults() -> None:
        await asyncio.sleep(rduration * 0.25)
        session.relay.kill(0)
        relay_events.append((round(time.monotonic() - rt0, 1), "kill relay0"))
        dead = [s for s in sockets if s.index % 2 == 0]
        relay.drop(dead)
        await asyncio.sleep(rduration * 0.1)
        await asyncio.to_thread(session.relay.restart, 0)
        await relay.connect(dead)
        relay_events.append((round(time.monotonic() - rt0, 1), "relay0 back, its sockets reconnected"))
        await asyncio.sleep(rduration * 0.2)
        await asyncio.to_thread(session.stack.restart, "redis2", 1.0)
        relay_events.append((round(time.monotonic() - rt0, 1), "restart redis2 (the relay's channel layer)"))

    rf = asyncio.get_running_loop().create_task(relay_faults())
    await offer(rate, rduration, rphase, lambda: relay.send(next(rsenders), rphase, PAD, size))
    await rf
    await drain([rphase], 10)
    await relay.close()
    relay_row = rphase.summary()
    relay_row["lost"] = relay_row["missing_after_drain"]
    print("    relay", fmt(relay_row), flush=True)
    # After the relay's Redis restart, the Parley gateways need a moment; give it before the next scenario.
    await settle(session, GATEWAYS)
    return {"scenario": "chaos", "devices": len(devices), "duration_s": duration, "events": events,
            "reconnects": reconnects, "parley": phase_rows, "check": check,
            "relay": [relay_row], "relay_events": relay_events, "relay_info": relay.check(),
            "t0": wall0, "series": {"parley": series(recorder), "relay": series(relay_recorder)}}


# --- degraded mode ---------------------------------------------------------------------------------

TOLD_WITHIN_S = 3.0  # issue 15, goal 5
EVERYDAY_TYPING_EVERY_MS = 2000  # PARLEY_TYPING_THROTTLE_MS's default: one typing frame per device this often


def told_after(devices, since: float) -> list[float | None]:
    """Per device, seconds from ``since`` (time.time()) to its first frame saying something is shed."""
    return [next((t - since for t, shed in d.degraded if t >= since and shed), None) for d in devices]


def told_summary(delays: list[float | None]) -> dict[str, Any]:
    told = sorted(d for d in delays if d is not None)
    n = len(told)
    return {"devices": len(delays), "told": n,
            "p50_s": round(told[n // 2], 2) if n else None, "max_s": round(told[-1], 2) if n else None,
            "within_3s": sum(d <= TOLD_WITHIN_S for d in told)}


async def degraded(session: Session, args) -> dict[str, Any]:
    """Four parts on one cohort: one device in eight stops acking, then every device types as often
    as the stack's default typing throttle lets a frame through (degraded mode must engage for
    neither); then ``floods`` typing floods, each held until every client was told and then stopped until
    degraded mode ended by itself. Each client's time from a flood's start to its ``degraded``
    frame is recorded; the first flood also labels the message-latency phases."""
    groups, size = 20, 10
    rate = args.degraded_rate  # messages/s; 20 = 200 deliveries/s
    typing_rate = args.typing_rate
    base_s, max_wait_shed, shed_s, recover_limit = (15, 40, 15, 90) if not args.quick else (6, 20, 6, 60)
    slow_s = 40 if not args.quick else 15
    everyday_s = 20 if not args.quick else 8
    floods = args.degraded_floods
    tag = f"dg{next(session.prefix)}u"
    members, seqs = await asyncio.to_thread(make_cohort, tag, groups, size)
    recorder = Recorder()
    pool, devices, connect_s = await connect_pool(session, recorder, members, seqs)
    watcher = devices[0]
    # Start from normal mode: an earlier scenario (a storm's disconnects) may have left it degraded.
    waited = time.monotonic()
    while time.monotonic() - waited < 90:
        lv = metrics.gauge(await asyncio.to_thread(session.scrape), "parley_degraded_level")
        if not lv:
            break
        await asyncio.sleep(1.0)
    start_level = metrics.gauge(await asyncio.to_thread(session.scrape), "parley_degraded_level")
    for dev in devices:
        dev.degraded.clear()
    print(f"  parley: {len(devices)} devices; degraded level {start_level} after waiting "
          f"{time.monotonic() - waited:.0f}s for normal mode", flush=True)
    senders = senders_round_robin(devices, lambda d: d.conversations[0])
    typers = itertools.cycle(devices)
    level_log: list[tuple[float, float | None, float | None, float | None]] = []
    reasons_log: list[tuple[float, tuple[str, ...]]] = []  # when the shared state's hot signals changed
    t0 = time.monotonic()
    wall0 = time.time() - (time.monotonic() - t0)  # time.time() at t0
    stop_all = False
    current = {"label": "unloaded"}

    def level() -> tuple[float | None, float | None, float | None]:
        snap = metrics.scrape(session.metrics_url(), timeout=5, attempts=1)
        return (metrics.gauge(snap, "parley_degraded_level"), metrics.gauge(snap, "parley_ack_timeout_ratio"),
                metrics.gauge(snap, "parley_ack_timeout_device_share"))

    def shared() -> dict[str, Any]:
        from ops import (
            degraded as degraded_mode,  # the stack's cache: what the gateways decided, and why
        )
        return degraded_mode.shared_state()

    def hot_reasons() -> tuple[str, ...]:
        return tuple(shared().get("auto", {}).get("reasons", ()))

    def blocking_calm() -> str:
        """The stored signals that keep degraded mode from calming down (for the timeline)."""
        signals = shared().get("signals", {})
        keys = ("late_ticks", "ticks", "recent_late_ticks", "queue_lag", "device_timeout_share", "devices",
                "disconnects", "slow_ticks")
        return ", ".join(f"{k}={round(signals[k], 3) if isinstance(signals.get(k), float) else signals.get(k)}"
                         for k in keys)

    async def watch() -> None:
        while not stop_all:
            lv, ratio, share = await asyncio.to_thread(level)
            at = round(time.monotonic() - t0, 1)
            level_log.append((at, lv, ratio, share))
            reasons = await asyncio.to_thread(hot_reasons)
            if not reasons_log or reasons_log[-1][1] != reasons:
                reasons_log.append((at, reasons))
            await asyncio.sleep(1.0)

    async def normal_mode(limit: float) -> bool:
        """Wait (at most ``limit`` s) until the watcher is told nothing is shed."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and shed_now():
            await asyncio.sleep(0.2)
        return not shed_now()

    def shed_now() -> bool:
        return bool(watcher.degraded and watcher.degraded[-1][1])

    def all_told(since: float) -> bool:
        return all(d is not None for d in told_after(devices, since))

    async def messages() -> None:
        start, i = time.perf_counter(), 0
        while not stop_all:
            phase = recorder.phase(current["label"], rate)
            dev, conv, n = next(senders)
            pool.send(dev, conv, phase, PAD, n)
            i += 1
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                phase.send_lag_max = max(phase.send_lag_max, -delay)

    typing_now = 0.0  # typing frames/s the load sends now (0: none)

    async def flood() -> None:
        nxt = time.perf_counter()
        while not stop_all:
            if typing_now:
                burst = 0
                while nxt <= time.perf_counter() and burst < 200:
                    dev = next(typers)
                    pool.typing(dev, dev.conversations[0])
                    nxt += 1.0 / typing_now
                    burst += 1
                await asyncio.sleep(0.005)
            else:
                nxt = time.perf_counter()
                await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(watch()), loop.create_task(messages()), loop.create_task(flood())]
    marks: list[tuple[float, str]] = []

    def mark(what: str) -> None:
        marks.append((round(time.monotonic() - t0, 1), what))
        print(f"    t={time.monotonic() - t0:.1f}s {what}", flush=True)

    mark("unloaded messages")
    await asyncio.sleep(base_s)
    def hot_since(since: float) -> set[str]:
        """The shared state's hot signals from a second before ``since`` (time.time()) on."""
        return {r for at, reasons in reasons_log if at >= since - wall0 - 1 for r in reasons}

    def told_since(since: float) -> int:
        return sum(1 for delay in told_after(devices, since) if delay is not None)

    # 1. A few slow devices: one in eight stops acking, nothing else changes.
    silent = devices[::8]
    slow_since = time.time()
    for dev in silent:
        dev.silent = True
    current["label"] = "one-in-eight-silent"
    mark(f"{len(silent)} of {len(devices)} devices stop acking")
    await asyncio.sleep(slow_s)
    for dev in silent:
        dev.silent = False
    seen = hot_since(slow_since)
    slow = {"silent": len(silent), "devices": len(devices), "seconds": slow_s, "told": told_since(slow_since),
            "on_ack_timeouts": "ack_timeouts" in seen, "hot_signals": sorted(seen)}
    mark(f"they ack again; clients told of degraded mode meanwhile: {slow['told']} "
         f"(hot signals: {', '.join(slow['hot_signals']) or 'none'})")
    # 2. Everyday typing: each device sends a typing frame every PARLEY_TYPING_THROTTLE_MS (its
    # default, 2 s: the most the throttle forwards for one conversation), here without the
    # throttle. Typing is then most of the gateways' frames, which is not an overload.
    everyday_rate = len(devices) * 1000 / EVERYDAY_TYPING_EVERY_MS
    current["label"] = "everyday-typing"
    everyday_since = time.time()
    typing_now = everyday_rate
    mark(f"everyday typing: every device every {EVERYDAY_TYPING_EVERY_MS / 1000:.0f} s ({everyday_rate:.0f} typing frames/s)")
    await asyncio.sleep(everyday_s)
    typing_now = 0.0
    everyday = {"rate": everyday_rate, "seconds": everyday_s, "told": told_since(everyday_since),
                "devices": len(devices), "hot_signals": sorted(hot_since(everyday_since))}
    mark(f"everyday typing off; clients told of degraded mode meanwhile: {everyday['told']} "
         f"(hot signals: {', '.join(everyday['hot_signals']) or 'none'})")
    current["label"] = "unloaded-again"
    await asyncio.sleep(5)
    # 3. Typing floods.
    runs: list[dict[str, Any]] = []
    recovered = True
    for k in range(floods):
        first = k == 0
        if not await normal_mode(recover_limit):
            mark(f"flood {k + 1}: not run, still degraded after {recover_limit}s (hot: {hot_reasons()})")
            runs.append({"devices": len(devices), "told": 0, "p50_s": None, "max_s": None, "within_3s": 0,
                         "not_run": True})
            continue
        current["label"] = "flood-before-shed" if first else f"flood-{k + 1}"
        flood_since = time.time()
        typing_now = typing_rate
        mark(f"flood {k + 1}: typing on ({typing_rate:.0f} typing frames/s)")
        deadline = time.monotonic() + max_wait_shed
        while time.monotonic() < deadline and not all_told(flood_since):
            await asyncio.sleep(0.1)
        summary = told_summary(told_after(devices, flood_since))
        runs.append(summary)
        mark(f"flood {k + 1}: {summary['told']}/{summary['devices']} clients told, p50 {summary['p50_s']} s, "
             f"max {summary['max_s']} s, {summary['within_3s']} within {TOLD_WITHIN_S:.0f} s")
        if first and shed_now():
            # The first seconds still drain what queued before shedding began; judged apart.
            current["label"] = "flood-shed-first-5s"
            await asyncio.sleep(5)
            current["label"] = "flood-shed"
            mark("shedding for 5 s: messages from now on are the settled shed phase")
            await asyncio.sleep(shed_s)
        else:
            await asyncio.sleep(3)
        typing_now = 0.0
        current["label"] = "after-flood" if first else f"after-flood-{k + 1}"
        mark(f"flood {k + 1}: typing off")
        deadline = time.monotonic() + recover_limit
        while time.monotonic() < deadline and shed_now():
            await asyncio.sleep(0.2)
        recovered = recovered and not shed_now()
        mark("degraded mode ended by itself" if not shed_now()
             else f"still degraded after {recover_limit}s ({await asyncio.to_thread(blocking_calm)})")
        runs[-1]["hot_signals"] = sorted(hot_since(flood_since))
    current["label"] = "recovered"
    await asyncio.sleep(min(10, base_s))
    stop_all = True
    await asyncio.gather(*tasks, return_exceptions=True)
    check = await final_check(pool, devices)
    rows = [p.summary() for p in recorder.phases.values()]
    typing_frames = sum(d.frames.get("typing", 0) for d in devices)
    await pool.stop()
    for row in rows:
        print("   ", fmt(row), flush=True)
    print(f"  parley check: {check}", flush=True)
    # The relay: the same message rate with and without the same flood of extra frames (no shedding).
    relay_recorder = Recorder()
    rooms = {c: size for c in seqs}
    r1, _ = await run_relay_phases(session, relay_recorder, rooms, size, [("relay-unloaded", rate)], base_s, 5, False)
    r2, info = await run_relay_phases(session, relay_recorder, rooms, size, [("relay-flood", rate)], base_s, 5, False,
                                      typing_rate=typing_rate)
    return {"scenario": "degraded", "devices": len(devices), "typing_rate": typing_rate, "marks": marks,
            "start_level": start_level, "slow_devices": slow, "everyday_typing": everyday, "floods": runs, "hot_signals": reasons_log,
            "levels": level_log, "recovered": recovered, "parley": rows, "check": check,
            "typing_frames_received": typing_frames, "relay": r1 + r2, "relay_info": info,
            "series": {"parley": series(recorder), "relay": series(relay_recorder)}}
