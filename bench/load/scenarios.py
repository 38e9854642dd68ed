"""The issue-7 scenarios on groups and a channel: steady, ramp, large, storm (chaos and
degraded are in bench/load/faults.py; the issue-3 and issue-4 scenarios in gateway.py and
largechannel.py). Each builds its own cohort, runs Parley through the stack, then the relay
baseline through the same load. ``SCENARIOS`` names every scenario of ``python -m bench.load``.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from bench.load import metrics
from bench.load.clients import Device, Pool
from bench.load.recorder import Phase, Recorder, pct
from bench.load.relayclients import RelayPool, RelaySocket
from bench.load.session import (
    GATEWAYS, PAD, Session, connect_pool, cpu_ms_per_msg, drain, final_check, fmt, group_by, make_cohort,
    offer, run_parley_phases, run_relay_phases, series, settle,
)


# --- steady and ramp --------------------------------------------------------------------------

async def steady(session: Session, args) -> dict[str, Any]:
    groups, size = 20, 10
    ladder = [("steady-1k", 1000 / size), ("steady-5k", 5000 / size, min(args.seconds, 10.0))]
    if args.quick:
        ladder = [("steady-1k", 1000 / size)]
    return await _groups_scenario(session, "steady", groups, size, ladder, args.seconds, args.drain, False,
                                  final_wait=60)


async def ramp(session: Session, args) -> dict[str, Any]:
    groups, size = 20, 10
    rates = [10, 25, 50, 75, 100, 150, 200, 300, 500] if not args.quick else [10, 50]
    ladder = [(f"ramp-{r}", r) for r in rates]
    return await _groups_scenario(session, "ramp", groups, size, ladder, min(args.seconds, 6.0), min(args.drain, 6.0), True)


async def _groups_scenario(session, name, groups, size, ladder, seconds, drain_s, stop,
                           final_wait: float = 30) -> dict[str, Any]:
    tag = f"{name[:2]}{next(session.prefix)}u"
    members, seqs = await asyncio.to_thread(make_cohort, tag, groups, size)
    recorder = Recorder()
    pool, devices, connect_s = await connect_pool(session, recorder, members, seqs)
    print(f"  parley: {len(devices)} devices ready in {connect_s:.1f}s", flush=True)
    rows = await run_parley_phases(session, pool, recorder, devices, ladder, seconds, drain_s, size, stop)
    check = await final_check(pool, devices, wait=final_wait)
    print(f"  parley check: {check}", flush=True)
    await pool.stop()
    relay_recorder = Recorder()
    relay_ladder = [(f"relay-{label}", *rest) for label, *rest in ladder]
    rooms = {c: size for c in seqs}
    relay_rows, relay_info = await run_relay_phases(session, relay_recorder, rooms, size, relay_ladder,
                                                    seconds, drain_s, stop)
    return {"scenario": name, "groups": groups, "group_size": size, "devices": len(devices),
            "connect_s": round(connect_s, 1), "parley": rows, "check": check,
            "relay": relay_rows, "relay_info": relay_info,
            "series": {"parley": series(recorder), "relay": series(relay_recorder)}}


# --- large channel --------------------------------------------------------------------------------

async def large(session: Session, args) -> dict[str, Any]:
    n = 1000 if not args.quick else 300
    rate, seconds = 20.0, (20.0 if not args.quick else 8.0)
    tag = f"lc{next(session.prefix)}u"
    members, seqs = await asyncio.to_thread(make_cohort, tag, 1, n, False, "channel")
    channel = next(iter(seqs))
    recorder = Recorder()
    pool, devices, connect_s = await connect_pool(session, recorder, members, seqs)
    print(f"  parley: {len(devices)} devices in one channel ready in {connect_s:.1f}s", flush=True)
    senders = devices[:20]
    ladder = [("large-20", rate)]
    rows = []
    for label, r in ladder:
        phase = recorder.phase(label, r)
        before, cpu0 = await asyncio.to_thread(session.scrape), session.cpu_probe()
        cycle = itertools.cycle(senders)
        await offer(r, seconds, phase, lambda: pool.send(next(cycle), channel, phase, PAD, n))
        await drain([phase], 20)
        cpu1 = session.cpu_probe()
        await asyncio.sleep(1.2)
        after = await asyncio.to_thread(session.scrape)
        row = phase.summary()
        row["offered_deliveries_per_s"] = round(r * n)
        row["cpu_percent"] = session.cpu_percent(cpu0, cpu1)
        row["cpu_ms_per_msg"] = cpu_ms_per_msg(cpu0, cpu1, phase.sent)
        row["stages"] = metrics.breakdown(before, after)
        row["sustained"] = row["p95_ms"] < 500 and row["missing_after_drain"] == 0
        rows.append(row)
        print("   ", fmt(row), flush=True)
    check = await final_check(pool, devices)
    print(f"  parley check: {check}", flush=True)
    await pool.stop()
    relay_recorder = Recorder()
    relay_rows, relay_info = await run_relay_phases(session, relay_recorder, {channel: n}, n,
                                                    [("relay-large-20", rate)], seconds, 20, False)
    return {"scenario": "large", "members": n, "connect_s": round(connect_s, 1), "parley": rows, "check": check,
            "relay": relay_rows, "relay_info": relay_info,
            "series": {"parley": series(recorder), "relay": series(relay_recorder)}}


# --- reconnect storm --------------------------------------------------------------------------------

async def storm(session: Session, args) -> dict[str, Any]:
    groups, per_group, missed = (20, 50, 50) if not args.quick else (4, 50, 20)
    size = per_group + 1  # plus one sender that stays connected
    tag = f"st{next(session.prefix)}u"
    members, seqs = await asyncio.to_thread(make_cohort, tag, groups, size)
    recorder = Recorder()
    pool, devices, connect_s = await connect_pool(session, recorder, members, seqs)
    by_conv = group_by(devices, lambda d: d.conversations[0])
    senders = [devs[0] for devs in by_conv.values()]
    stormers = [d for devs in by_conv.values() for d in devs[1:]]
    print(f"  parley: {len(devices)} devices ready in {connect_s:.1f}s; dropping {len(stormers)}", flush=True)
    before = await asyncio.to_thread(session.scrape)
    pool.drop(stormers)
    await asyncio.sleep(1.0)
    phase = recorder.phase("storm-missed", 0)
    cycle = itertools.cycle(senders)
    t_send = time.monotonic()
    await offer(200.0, groups * missed / 200.0, phase, lambda: _send_own(pool, next(cycle), phase, size))
    while pool.unconfirmed() and time.monotonic() - t_send < 60:
        await asyncio.sleep(0.1)
    stored_s = time.monotonic() - t_send
    await settle(session, GATEWAYS)
    cpu0 = session.cpu_probe()
    t0 = time.time()
    async with session.profiled("storm", GATEWAYS):
        pool.come_back(stormers)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(d.caught_up_at for d in stormers):
            await asyncio.sleep(0.05)
    cpu1 = session.cpu_probe()
    await asyncio.sleep(1.2)
    after = await asyncio.to_thread(session.scrape)
    ready = sorted(d.ready_at - t0 for d in stormers if d.ready_at)
    caught = sorted(d.caught_up_at - t0 for d in stormers if d.caught_up_at)
    check = await final_check(pool, devices)
    degraded = sorted({(round(t - t0, 1), tuple(s)) for d in stormers for t, s in d.degraded if t >= t0})[:5]
    await pool.stop()
    result = {
        "clients": len(stormers), "missed_each": missed, "stored_s": round(stored_s, 1),
        "time_to_ready": _dist(ready, len(stormers)), "time_to_caught_up": _dist(caught, len(stormers)),
        "cpu_percent": session.cpu_percent(cpu0, cpu1), "stages": metrics.breakdown(before, after),
        "degraded_frames": degraded,
    }
    print(f"  parley storm: ready {result['time_to_ready']} caught up {result['time_to_caught_up']}", flush=True)
    print(f"  parley check: {check}", flush=True)
    # The relay: the same sockets dropped and back at once; it has no replay, so it can only reconnect.
    relay = RelayPool(session.relay.urls, Recorder())
    sockets = [RelaySocket(i, c) for i, c in enumerate(c for c in seqs for _ in range(per_group))]
    await relay.connect(sockets)
    relay.drop(sockets)
    await asyncio.sleep(1.0)
    t0 = time.time()
    await relay.connect(sockets, parallel=len(sockets))
    relay_ready = sorted(s.connected_at - t0 for s in sockets)
    await relay.close()
    relay_result = {"clients": len(sockets), "time_to_connected": _dist(relay_ready, len(sockets)),
                    "missed_messages_recovered": 0}
    print(f"  relay storm: {relay_result}", flush=True)
    return {"scenario": "storm", "devices": len(devices), "connect_s": round(connect_s, 1),
            "parley": result, "check": check, "relay": relay_result,
            "series": {"parley_ready": [round(x * 1000) for x in ready],
                       "parley_caught_up": [round(x * 1000) for x in caught],
                       "relay_connected": [round(x * 1000) for x in relay_ready]}}


def _send_own(pool: Pool, dev: Device, phase: Phase, members: int) -> None:
    pool.send(dev, dev.conversations[0], phase, PAD, members)


def _dist(values: list[float], n: int) -> dict[str, Any]:
    return {"n": len(values), "of": n, "p50_s": round(pct(values, 0.5), 2), "p95_s": round(pct(values, 0.95), 2),
            "p99_s": round(pct(values, 0.99), 2), "max_s": round(values[-1], 2) if values else None}


def _registry() -> dict[str, Any]:
    from bench.load import faults, gateway, largechannel

    return {"steady": steady, "ramp": ramp, "large": large, "storm": storm, "chaos": faults.chaos,
            "degraded": faults.degraded, "gateway": gateway.gateway, "large-channel": largechannel.large_channel}


SCENARIOS = _registry()
# ``--scenario all``: the issue-7 suite. gateway (issue 3) and large-channel (issue 4) run by name.
ORDER = ["steady", "ramp", "large", "degraded", "storm", "chaos"]
