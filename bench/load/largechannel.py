"""Issue 4: one channel with 1,000 connected members, buffered and direct fan-out beside the relay.

    python -m bench.load --scenario large-channel [--systems relay,buffered,direct] [--members 1000]
        [--single 20 --single-gap 1] [--rate 20 --rate-seconds 30] [--relay-rates 1,5 --relay-seconds 15]

The members (one device each) are in one channel (``do_create_group``, kind channel). Each
Parley system runs on the stack's two Redis servers, ``--gateways`` gateways and the Celery
worker (as when this was bench/large_channel.py; no beat or balancer), restarted with its
settings, and the relay alone on the same Redis. After 3 warm-up messages (not measured):

* ``single``: ``--single`` messages, one every ``--single-gap`` seconds from rotating members;
* ``rate``: ``--rate`` messages/s for ``--rate-seconds`` from ``--senders`` rotating members;
* the relay at each of ``--relay-rates`` messages/s for ``--relay-seconds``.

Systems: ``buffered`` (``PARLEY_LARGE_CHANNEL_THRESHOLD`` below N: one batch task and one
``messages`` frame per member per window; ``buffered:250`` sets ``PARLEY_BATCH_WINDOW_MS``),
``direct`` (the threshold above N: one ``message`` frame per member per message; presence off,
or connecting would be N x N presence frames), ``relay`` (bench/relay, one channel per
socket); ``-noack`` after a Parley system: its clients never ack.

Definitions (as issue 4 set them): a *delivery* is a message reaching a member other than
its sender (N-1 per message); *latency* from the send to the recipient parsing the frame
(bench/load/recorder.py); *all members*: until the last recipient has it. Clients dedupe by
seq, ack once per frame that brought new messages and pull a replay on a gap or ``has_more``
(bench/load/clients.py). *lost*: missing after the drain (``missing_at_end``: after
``--straggler-wait`` more); Parley's *duplicates* are seqs at or below a device's cursor
(dropped) and *seq breaks* a seq past cursor + 1; the relay's *reordered* is a socket seeing
a message sent before one it already had. *Redis commands per message*: ``INFO`` deltas of
both stack Redis servers with their idle rate subtracted.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from typing import Any

from bench.load.recorder import Recorder, ms, pct
from bench.load.relayclients import RelayPool, RelaySocket
from bench.load.session import (
    PAD, Session, cpu_ms_per_msg, devices_of, drain, make_cohort, offer, series, settle,
)
from bench.load.stack import GATEWAYS

DEFAULTS = {"ack_ms": 100.0, "drain": 15.0, "gateways": 2, "systems": "relay,buffered,direct", "straggler_wait": 10.0}


def add_arguments(parser) -> None:
    g = parser.add_argument_group("large-channel (issue 4)")
    g.add_argument("--members", type=int, default=1000)
    g.add_argument("--single", type=int, default=20)
    g.add_argument("--single-gap", type=float, default=1.0)
    g.add_argument("--rate", type=float, default=20.0)
    g.add_argument("--rate-seconds", type=float, default=30.0)
    g.add_argument("--relay-rates", default="1,5")
    g.add_argument("--relay-seconds", type=float, default=15.0)
    g.add_argument("--senders", type=int, default=20)


class RedisCommands:
    """Commands processed by the stack's Redis servers (summed), by command and in total."""

    def __init__(self, ports: list[int]) -> None:
        import redis

        self.clients = [redis.Redis(port=p) for p in ports]

    def snapshot(self) -> Counter:
        total: Counter = Counter()
        for client in self.clients:
            total.update({k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()})
            total["_total"] += client.info("stats")["total_commands_processed"]
        return total

    async def idle_rate(self, seconds: float = 3.0) -> dict[str, float]:
        """Commands/s with nothing happening (polls, maintenance), subtracted from each scenario."""
        a, t = self.snapshot(), time.monotonic()
        await asyncio.sleep(seconds)
        b, dt = self.snapshot(), time.monotonic() - t
        return {k: (b[k] - a.get(k, 0)) / dt for k in b if b[k] - a.get(k, 0) > 0}


def reset_fanout(conversation_id: int) -> int:
    """Start a system with nothing pending: the batch cursor at the stored tail."""
    from django.db.models import F

    from messaging.models import Conversation

    Conversation.objects.filter(pk=conversation_id).update(fanout_seq=F("last_seq"))
    return Conversation.objects.get(pk=conversation_id).last_seq


async def large_channel(session: Session, args) -> dict[str, Any]:
    if args.quick:
        args.members, args.single, args.rate_seconds, args.relay_seconds = 200, 5, 8.0, 5.0
    tag = f"lc{next(session.prefix)}u"
    members, seqs = await asyncio.to_thread(make_cohort, tag, 1, args.members, False, "channel")
    channel = next(iter(seqs))
    results, recorders = [], {}
    saved_env = dict(session.stack.env)
    try:
        for spec in [s.strip() for s in args.systems.split(",") if s.strip()]:
            print(f"  {spec}:", flush=True)
            recorders[spec] = Recorder(count_own=False, order="socket" if spec == "relay" else None, per_message=True)
            results.append(await run_system(session, args, spec, members, channel, recorders[spec]))
    finally:
        session.stack.env.clear()
        session.stack.env.update(saved_env)
        session.swap_relay()
    lines = verdict(results)
    for line in lines:
        print("  " + line, flush=True)
    return {"scenario": "large-channel", "members": args.members, "systems": results, "verdict": lines,
            "tables": tables(results, lines),
            "series": {"parley": {f"{s}:{k}": v for s, r in recorders.items() if s != "relay"
                                  for k, v in series(r).items()},
                       "relay": series(recorders["relay"]) if "relay" in recorders else {}}}


async def run_system(session: Session, args, spec: str, members, channel: int, recorder: Recorder):
    stack, n = session.stack, len(members)
    name, _, window = spec.partition(":")
    noack = name.endswith("-noack")
    name = name.removesuffix("-noack")
    gateways = GATEWAYS[:args.gateways]
    stack.flush_redis()
    if name == "relay":
        stack.only(["redis1", "redis2"])
        relay = session.swap_relay(count=args.gateways)
        clients: Any = RelayPool(relay.urls, recorder)
        sockets = [RelaySocket(i, channel) for i in range(n)]
        connect_s = await clients.connect(sockets, parallel=25)
        send = lambda i, phase: clients.send(sockets[i], phase, PAD, n - 1)  # noqa: E731
        frames = lambda: Counter(message=clients.frames)  # noqa: E731
    elif name in ("buffered", "direct"):
        stack.env.update({
            "PARLEY_LARGE_CHANNEL_THRESHOLD": str(n // 10 if name == "buffered" else n * 10),
            **({"PARLEY_BATCH_WINDOW_MS": window} if window else {}),
            **({"PARLEY_PRESENCE_MAX_CONVERSATIONS": "0"} if name == "direct" else {}),
        })
        session.relay.stop()  # each system runs alone
        stack.only(["redis1", "redis2", *gateways, "worker"], restart=[*gateways, "worker"])
        cursor = await asyncio.to_thread(reset_fanout, channel)
        clients = session.pool(recorder, ack_ms=-1 if noack else args.ack_ms, gateways=gateways)
        devices = devices_of(members, {channel: cursor})
        clients.add(devices)
        connect_s = await clients.start(devices, parallel=25)
        send = lambda i, phase: clients.send(devices[i], channel, phase, PAD, n - 1)  # noqa: E731
        frames = lambda: sum((d.frames for d in devices), start=Counter())  # noqa: E731
    else:
        raise SystemExit(f"unknown large-channel system {spec}")
    print(f"    {n} sockets ready in {connect_s:.1f}s; frames so far {dict(frames())}", flush=True)
    await settle(session, gateways if name != "relay" else [], quiet=8.0)
    senders = list(range(0, n, max(1, n // args.senders)))[:args.senders]
    redis = RedisCommands([stack.ports["redis1"], stack.ports["redis2"]])
    probe = Probe(session, clients, frames, redis, n)
    # Warm-up (not measured): proves the worker is up and every member receives.
    warm = await probe.run(f"w{name[0]}", 3, 1.0, senders, send, 120.0, {})
    print(f"    warm-up delivered {warm['deliveries']}/{warm['expected']} (p95 {warm['p95_ms']} ms)", flush=True)
    await asyncio.sleep(1.0)
    idle = await redis.idle_rate()
    print(f"    idle Redis {idle.get('_total', 0.0):.1f} commands/s", flush=True)
    tag = name[0] + ("n" if noack else "") + (window or "")
    if name == "relay":
        plan = [(f"{tag}r{int(r)}", max(1, int(r * args.relay_seconds)), r)
                for r in (float(x) for x in args.relay_rates.split(",") if x)]
    else:
        plan = [(f"{tag}single", args.single, 1 / args.single_gap),
                (f"{tag}rate", int(args.rate * args.rate_seconds), args.rate)]
    rows = []
    for label, count, rate in plan:
        profiled = [*gateways, "worker"] if name != "relay" else session.relay.names
        async with session.profiled(f"large-{label}", profiled):
            row = await probe.run(label, count, rate, senders, send, args.drain, idle)
        rows.append(row)
        print("    " + fmt(row), flush=True)
        await settle(session, gateways if name != "relay" else [], quiet=8.0)
    end = time.monotonic() + args.straggler_wait  # late, or lost?
    while time.monotonic() < end and any(probe.phases[r["scenario"]].delivered < probe.phases[r["scenario"]].expected
                                         for r in rows):
        await asyncio.sleep(0.1)
    for row in rows:
        phase = probe.phases[row["scenario"]]
        row["missing_at_end"] = phase.expected - phase.delivered
    if name == "relay":
        await clients.close()
    else:
        await clients.stop()
    return {"system": spec, "gateways": args.gateways, "members": n, "scenarios": rows,
            "frames_by_type": dict(frames()), "unattributed": recorder.unattributed,
            "tracebacks_in_logs": stack.tracebacks()}


class Probe:
    """Runs one measured scenario: the sends, the drain, and every count around them."""

    def __init__(self, session: Session, clients, frames, redis: RedisCommands, members: int) -> None:
        self.session, self.clients, self.frames, self.redis, self.members = session, clients, frames, redis, members
        self.phases: dict = {}

    async def run(self, label, count, rate, senders, send, drain_s, idle) -> dict[str, Any]:
        phase = self.clients.recorder.phase(label, rate)
        self.phases[label] = phase
        sent_frames = getattr(self.clients, "sent_frames", Counter())
        frames0, sent0 = self.frames(), Counter(sent_frames)
        cmds0, cpu0 = self.redis.snapshot(), self.session.cpu_probe()
        order = itertools.cycle(senders)
        await offer(rate, (count + 0.5) / rate, phase, lambda: send(next(order), phase))  # exactly count sends
        await drain([phase], drain_s)
        await asyncio.sleep(0.3)  # the last acks and send.ok answers
        cmds1, cpu1 = self.redis.snapshot(), self.session.cpu_probe()
        elapsed = cpu1["wall"] - cpu0["wall"]
        frames = self.frames() - frames0
        sent = Counter(sent_frames) - sent0
        carrying = frames["message"] + frames["messages"]
        raw = cmds1["_total"] - cmds0["_total"]
        by_cmd = {k: cmds1[k] - cmds0.get(k, 0) - idle.get(k, 0.0) * elapsed for k in cmds1 if k != "_total"}
        span, n, lat = phase.span, max(1, phase.sent), sorted(phase.latencies)
        alls = self.clients.recorder.all_members(phase, self.members - 1)
        per_member_s = self.members * span if span > 0 else None
        return {
            "scenario": label, "messages": phase.sent, "offered_msgs_per_s": round(rate, 2),
            "deliveries": phase.delivered, "expected": phase.expected, "lost": phase.expected - phase.delivered,
            **phase.checks(), "send_errors": dict(phase.send_errors),
            "p50_ms": ms(pct(lat, .5)), "p95_ms": ms(pct(lat, .95)), "p99_ms": ms(pct(lat, .99)),
            "max_ms": ms(lat[-1]) if lat else None,
            "all_members_p50_ms": ms(pct(alls, .5)), "all_members_p95_ms": ms(pct(alls, .95)),
            "all_members_max_ms": ms(alls[-1]) if alls else None,
            "span_s": round(span, 2), "msgs_per_s": round(phase.sent / span, 2) if span > 0 else None,
            "deliveries_per_s": round(phase.delivered / span) if span > 0 else None,
            "frames_per_member_per_s": round(carrying / per_member_s, 2) if per_member_s else None,
            "all_frames_per_member_per_s": round(sum(frames.values()) / per_member_s, 2) if per_member_s else None,
            "messages_per_frame": round((phase.delivered + phase.sent) / max(1, carrying), 2),
            "replays_requested": sent["replay"], "frames_by_type": dict(frames),
            "acks_per_member_per_s": round(sent["ack"] / per_member_s, 2) if per_member_s else None,
            "redis_cmds_per_msg": round((raw - idle.get("_total", 0.0) * elapsed) / n, 1),
            "redis_cmds_per_msg_raw": round(raw / n, 1),
            "redis_top_per_msg": {k: round(v / n, 1) for k, v in sorted(by_cmd.items(), key=lambda kv: -kv[1])[:8]
                                  if v / n >= 0.5},
            "cpu_percent": self.session.cpu_percent(cpu0, cpu1), "cpu_ms_per_msg": cpu_ms_per_msg(cpu0, cpu1, n),
            "generator_lag_max_ms": ms(phase.send_lag_max), "loadavg": [round(x, 2) for x in os.getloadavg()],
        }


def fmt(r: dict[str, Any]) -> str:
    return (f"{r['scenario']}: {r['messages']} msgs at {r['offered_msgs_per_s']}/s -> {r['msgs_per_s']}/s; "
            f"p50 {r['p50_ms']} p95 {r['p95_ms']} p99 {r['p99_ms']} max {r['max_ms']} ms; all-members p95 "
            f"{r['all_members_p95_ms']} ms; send.ok p95 {r['send_ok_p95_ms']}; lost {r['lost']} dup {r['duplicates']} "
            f"reord {r['reordered']} seqbreak {r['seq_breaks']} replays {r['replays_requested']}; frames/member/s "
            f"{r['frames_per_member_per_s']} ({r['messages_per_frame']} msg/frame, acks/member/s "
            f"{r['acks_per_member_per_s']}); redis cmds/msg {r['redis_cmds_per_msg']} (raw {r['redis_cmds_per_msg_raw']}); "
            f"cpu% {r['cpu_percent']}; cpu ms/msg {r['cpu_ms_per_msg']}; lag {r['generator_lag_max_ms']} ms")


def verdict(results: list[dict[str, Any]]) -> list[str]:
    """The goals of issue 4, as bench/large_channel.py judged them."""
    lines = []
    for system in results:
        for r in system["scenarios"]:
            clean = r["lost"] == 0 and r["duplicates"] == 0 and r["reordered"] == 0 and r["seq_breaks"] == 0
            if r["scenario"].endswith("single"):
                lines.append(f"{system['system']}: one message to all {system['members']}: p95 {r['p95_ms']} ms "
                             f"(issue 15 goal < 150) -> {'MET' if r['p95_ms'] < 150 and clean else 'NOT MET'}")
            elif r["scenario"].endswith("rate"):
                lines.append(f"{system['system']}: {r['offered_msgs_per_s']} msg/s: p95 {r['p95_ms']} ms "
                             f"(issue 15 goal < 400), lost {r['lost']} dup {r['duplicates']} reord "
                             f"{r['reordered'] + r['seq_breaks']} -> {'MET' if r['p95_ms'] < 400 and clean else 'NOT MET'}")
    return lines


def tables(results: list[dict[str, Any]], lines: list[str]) -> list[str]:
    out = ["| system | scenario | msgs got/s | p50 ms | p95 ms | p99 ms | all members p95 ms | lost at drain | "
           "missing at end | dup / reord / seq breaks | frames/member/s | msg/frame | Redis cmds/msg | "
           "gateway CPU ms/msg | others % |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for system in results:
        for r in system["scenarios"]:
            c = r["cpu_ms_per_msg"]
            out.append(f"| {system['system']} | {r['scenario']} | {r['msgs_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
                       f"{r['p99_ms']} | {r['all_members_p95_ms']} | {r['lost']} | {r['missing_at_end']} | "
                       f"{r['duplicates']} / {r['reordered']} / {r['seq_breaks']} | {r['frames_per_member_per_s']} | "
                       f"{r['messages_per_frame']} | {r['redis_cmds_per_msg']} | "
                       f"{c.get('gateways', c.get('relay', ''))} | {r['cpu_percent'].get('others', '')} |")
    return out + [""] + [f"- {line}" for line in lines]
