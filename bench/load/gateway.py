"""Issue 3: send-to-deliver latency and sustained deliveries/s of Parley's gateway beside relays.

    python -m bench.load --scenario gateway [--systems parley,relay,relay-pubsub,relay-persist,pair]
        [--gateways 1|2] [--ladder 100,250,...] [--pair-ladder 10,25,...] [--ack-ms 100] [--quick]

200 devices (``--connections``) in 20 groups of 10 (``--group-size``), plus one pair in a
direct conversation. Each system runs on the stack's two Redis servers and ``--gateways``
processes, nothing else of the stack (no worker, beat or balancer, as when this was
bench/gateway_load.py), and climbs a ladder of offered rates (``--step-seconds`` each, then
``--drain``), stopping at the first step that is not sustained or when ``--budget`` is spent:

* ``parley``: the stack's gateway(s) (``parley-gateway``): every message stored, sequenced, fanned
  out after commit, acked by every recipient (cumulative, at most once per conversation every
  ``--ack-ms``; 0: after every frame; -1: never);
* ``relay``, ``relay-pubsub``: the Channels tutorial's relay (bench/relay) on RedisChannelLayer
  or RedisPubSubChannelLayer; ``relay-persist``: the relay inserting each message first;
* ``pair``: Parley, the 2-user direct conversation, the ladder in messages/s.

Definitions (as issue 3 set them): a *delivery* is a message reaching a member's device other
than the sender's (9 per message in a group of 10; the sender's own copy is not counted), so
the ladder is in offered deliveries/s and offered messages/s = deliveries/s / 9. *Latency*
runs from the sender's send to the recipient parsing the frame (bench/load/recorder.py, one
clock, one process). *deliveries/s*: a step's deliveries over the time from its first send to
its last delivery. *lost*: expected deliveries still missing after the drain
(``missing_at_end``: after the ladder and ``--straggler-wait`` more seconds); *duplicates*,
*reordered* (per recipient and sender), *seq breaks* (a conversation's seq on one connection
not the previous + 1) per step. A step is *sustained* when p95 < 250 ms, nothing is lost,
duplicated, reordered or broken, no send failed and deliveries/s reach 95% of the offer.
*Gap-fill reads*: index scans of ``message_unique_seq`` (the gateways' gap fills and replay pages).
"""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

from bench.load.recorder import Recorder
from bench.load.relayclients import RelayPool, RelaySocket
from bench.load.session import (
    PAD, Session, cpu_ms_per_msg, devices_of, drain, final_check, fmt, last_seqs, make_cohort, offer,
    senders_round_robin, series, settle, sustained,
)
from bench.load.stack import GATEWAYS, PG_BASE

SYSTEMS = "parley,relay,relay-pubsub,relay-persist,pair"
DEFAULTS = {"ack_ms": 100.0, "drain": 5.0, "gateways": 1, "systems": SYSTEMS, "straggler_wait": 15.0}


def add_arguments(parser) -> None:
    g = parser.add_argument_group("gateway (issue 3)")
    g.add_argument("--connections", type=int, default=200)
    g.add_argument("--group-size", type=int, default=10)
    g.add_argument("--ladder", default="100,250,500,750,1000,1500,2000,3000", help="offered deliveries/s per step")
    g.add_argument("--pair-ladder", default="10,25,50,100,150,200,300", help="offered messages/s per pair step")
    g.add_argument("--step-seconds", type=float, default=6.0)
    g.add_argument("--pause", type=float, default=1.0, help="seconds between steps")
    g.add_argument("--budget", type=float, default=560.0, help="seconds; the ladders stop when spent")
    g.add_argument("--keep-climbing", action="store_true",
                   help="run every step of the ladder even after one is not sustained (profiling)")


def gap_fill_reads(database: str) -> int:
    """Index scans of (conversation, seq); PostgreSQL publishes them about once a second."""
    import psycopg

    with psycopg.connect(f"{PG_BASE}/{database}", autocommit=True) as conn:
        row = conn.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'message_unique_seq'"
                           ).fetchone()
    return row[0] if row else 0


async def gateway(session: Session, args) -> dict[str, Any]:
    if args.quick:
        args.step_seconds, args.drain, args.pause = 3.0, 3.0, 0.5
        args.ladder, args.pair_ladder, args.budget = "250,500,1000,2000", "25,50,100,200", min(args.budget, 170.0)
    if args.connections % args.group_size:
        raise SystemExit("--connections must be a multiple of --group-size")
    deadline = time.monotonic() + args.budget
    gateways = GATEWAYS[:args.gateways]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    tag = f"gw{next(session.prefix)}u"
    cohort = await asyncio.to_thread(make_cohort, tag, args.connections // args.group_size, args.group_size)
    pair = await asyncio.to_thread(make_cohort, tag + "p", 1, 2, False, "direct")
    if "relay-persist" in systems:
        await asyncio.to_thread(session.relay.create_tables)
    results, recorders = [], {}
    try:
        for name in systems:
            if time.monotonic() > deadline:
                print(f"  {name}: skipped, time budget spent", flush=True)
                continue
            members, size = pair if name == "pair" else cohort, 2 if name == "pair" else args.group_size
            ladder = [float(x) for x in (args.pair_ladder if name == "pair" else args.ladder).split(",") if x]
            recorders[name] = Recorder(count_own=False)
            print(f"  {name}:", flush=True)
            runner = run_parley if name in ("parley", "pair") else run_relay
            results.append(await runner(session, args, name, members, size, ladder, recorders[name], gateways,
                                        deadline))
    finally:
        session.swap_relay()  # the default relay again, for the scenarios after this one
    lines = verdict(results)
    for line in lines:
        print("  " + line, flush=True)
    return {"scenario": "gateway", "gateways": args.gateways, "connections": args.connections,
            "group_size": args.group_size, "ack_ms": args.ack_ms, "systems": results, "verdict": lines,
            "tables": tables(results, lines),
            "series": {"parley": {f"{n}:{k}": v for n in ("parley", "pair") if n in recorders
                                  for k, v in series(recorders[n]).items()},
                       "relay": {f"{n}:{k}": v for n, r in recorders.items() if n.startswith("relay")
                                 for k, v in series(r).items()}}}


async def run_parley(session: Session, args, name, cohort, size, ladder, recorder, gateways, deadline):
    stack = session.stack
    stack.flush_redis()
    session.relay.stop()  # each system runs alone
    stack.only(["redis1", "redis2", *gateways], restart=gateways)  # a fresh gateway per system
    members, seqs = cohort
    devices = devices_of(members, await asyncio.to_thread(last_seqs, set(seqs)))
    pool = session.pool(recorder, ack_ms=args.ack_ms, gateways=gateways)
    pool.add(devices)
    connect_s = await pool.start(devices)
    await settle(session, gateways, quiet=5.0)
    senders = senders_round_robin(devices, lambda d: d.conversations[0])

    def sender(phase, recipients):
        dev, conversation, _ = next(senders)
        pool.send(dev, conversation, phase, PAD, recipients)

    async with session.profiled(name, gateways):
        rows = await climb(session, args, name, ladder, size, recorder, sender, deadline, parley=True)
    check = await final_check(pool, devices, wait=10)
    frames = sum((d.frames for d in devices), start=Counter())
    await pool.stop()
    return {"system": name, "gateways": len(gateways), "sockets": len(devices), "connect_s": round(connect_s, 1),
            "recipients_per_message": size - 1, "steps": rows, "check": check, "frames_received": dict(frames),
            "unattributed": recorder.unattributed, "tracebacks_in_logs": session.stack.tracebacks()}


async def run_relay(session: Session, args, name, cohort, size, ladder, recorder, gateways, deadline):
    stack = session.stack
    stack.flush_redis()
    stack.only(["redis1", "redis2"])  # the relay alone, as Parley runs alone
    relay = session.swap_relay(count=len(gateways), layer="pubsub" if name == "relay-pubsub" else "core")
    members, seqs = cohort
    pool = RelayPool(relay.urls, recorder, path="relay-persist" if name == "relay-persist" else "relay")
    sockets = [RelaySocket(m["index"], m["conversations"][0]) for m in members]
    connect_s = await pool.connect(sockets)
    await settle(session, [], quiet=5.0)
    order = itertools.cycle(sorted(sockets, key=lambda s: (s.index % size, s.room)))

    def sender(phase, recipients):
        pool.send(next(order), phase, PAD, recipients)

    async with session.profiled(name, relay.names):
        rows = await climb(session, args, name, ladder, size, recorder, sender, deadline, parley=False)
    await pool.close()
    return {"system": name, "gateways": len(relay.names), "sockets": len(sockets), "connect_s": round(connect_s, 1),
            "recipients_per_message": size - 1, "steps": rows, "relay_check": pool.check(),
            "unattributed": recorder.unattributed}


async def climb(session: Session, args, name, ladder, size, recorder, sender, deadline, parley: bool) -> list:
    """The ladder: one step per rate until one is not sustained; then the stragglers' wait."""
    recipients = 1 if name == "pair" else size - 1
    rows, phases = [], []
    for i, rate in enumerate(ladder):
        if time.monotonic() + args.step_seconds + args.drain > deadline:
            print(f"    {name}: time budget reached, ladder stops", flush=True)
            break
        msgs = rate if name == "pair" else rate / recipients
        phase = recorder.phase(f"{name[:2]}{i}", msgs)
        phases.append(phase)
        reads0 = await asyncio.to_thread(gap_fill_reads, session.stack.database) if parley else None
        cpu0 = session.cpu_probe()
        await offer(msgs, args.step_seconds, phase, lambda: sender(phase, recipients))
        await drain([phase], args.drain)
        await asyncio.sleep(0.05)  # the last send.ok answers
        cpu1 = session.cpu_probe()
        row = {**phase.summary(), **phase.checks(), "offered_deliveries_per_s": round(msgs * recipients)}
        row["lost"] = row["missing_after_drain"]
        row["cpu_percent"] = session.cpu_percent(cpu0, cpu1)
        row["cpu_ms_per_msg"] = cpu_ms_per_msg(cpu0, cpu1, phase.sent)
        if parley:
            await asyncio.sleep(1.1)
            row["gap_fill_reads"] = await asyncio.to_thread(gap_fill_reads, session.stack.database) - reads0
        row["sustained"] = (sustained(row, msgs * recipients) and not row["duplicates"] and not row["reordered"]
                            and not row["seq_breaks"])
        rows.append(row)
        print(f"    {name} {fmt(row)}; send.ok p95 {row['send_ok_p95_ms']} dup {row['duplicates']} "
              f"reord {row['reordered']} seqbreak {row['seq_breaks']} gap-fill reads {row.get('gap_fill_reads')}; "
              f"cpu ms/msg {row['cpu_ms_per_msg']}", flush=True)
        if not row["sustained"] and not args.keep_climbing:
            break
        await asyncio.sleep(args.pause)
    end = time.monotonic() + args.straggler_wait  # late, or lost?
    while time.monotonic() < end and any(p.delivered < p.expected for p in phases):
        await asyncio.sleep(0.1)
    for row, phase in zip(rows, phases):
        row["missing_at_end"] = phase.expected - phase.delivered
    return rows


def best_sustained(result: dict[str, Any]) -> dict[str, Any] | None:
    ok = [s for s in result["steps"] if s["sustained"]]
    return max(ok, key=lambda s: s["deliveries_per_s"]) if ok else None


def verdict(results: list[dict[str, Any]]) -> list[str]:
    """The goals of issue 3, as bench/gateway_load.py judged them."""
    lines = []
    by = {r["system"]: r for r in results}
    parley = by.get("parley")
    if parley:
        at = [s for s in parley["steps"] if s["offered_deliveries_per_s"] == 1000]
        if at:
            s = at[0]
            lines.append(f"goal 1, p95 <= 50 ms at 1,000 deliveries/s: p95 {s['p95_ms']} ms "
                         f"-> {'MET' if s['p95_ms'] <= 50 and s['lost'] == 0 else 'NOT MET'}")
        elif parley["steps"] and parley["steps"][-1]["offered_deliveries_per_s"] < 1000:
            s = parley["steps"][-1]
            lines.append(f"goal 1, p95 <= 50 ms at 1,000 deliveries/s: NOT MET (already "
                         f"{s['offered_deliveries_per_s']} deliveries/s was not sustained: p95 {s['p95_ms']} ms)")
        relays = [(n, best_sustained(by[n])) for n in ("relay", "relay-pubsub") if n in by]
        relays = [(n, s) for n, s in relays if s]
        mine = best_sustained(parley)
        if relays:
            n, best = max(relays, key=lambda x: x[1]["deliveries_per_s"])
            have = mine["deliveries_per_s"] if mine else 0
            ratio = have / best["deliveries_per_s"] if best["deliveries_per_s"] else 0.0
            lines.append(f"issue 15 goal 1, highest sustained deliveries/s (p95 < 250 ms) at least 2x the relay's: "
                         f"parley {have} vs best relay ({n}) {best['deliveries_per_s']}, {ratio:.2f}x -> "
                         f"{'MET' if ratio >= 2 else 'NOT MET'} (the ladder's resolution bounds both)")
    if "pair" in by:
        mine = best_sustained(by["pair"])
        lines.append(f"2-user conversation: highest sustained send rate at p95 < 250 ms: "
                     f"{mine['offered_msgs_per_s'] if mine else 'none of the ladder'} msg/s")
    return lines


def tables(results: list[dict[str, Any]], lines: list[str]) -> list[str]:
    out = ["| system | offered deliv/s | got deliv/s | p50 ms | p95 ms | p99 ms | send.ok p95 ms | lost at drain "
           "| missing at end | dup / reord / seq breaks | gateway CPU ms/msg | Redis | PostgreSQL | others % | sustained |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in results:
        for s in r["steps"]:
            c = s["cpu_ms_per_msg"]
            out.append(f"| {r['system']} | {s['offered_deliveries_per_s']} | {s['deliveries_per_s']} | {s['p50_ms']} | "
                       f"{s['p95_ms']} | {s['p99_ms']} | {s['send_ok_p95_ms'] or ''} | {s['lost']} | "
                       f"{s['missing_at_end']} | {s['duplicates']} / {s['reordered']} / {s['seq_breaks']} | "
                       f"{c.get('gateways', c.get('relay', ''))} | {c.get('redis', '')} | {c.get('postgres', '')} | "
                       f"{s['cpu_percent'].get('others', '')} | {'yes' if s['sustained'] else 'no'} |")
    return out + [""] + [f"- {line}" for line in lines]
