"""One channel with 1,000 connected members: buffered fan-out, direct fan-out and the relay, in one run.

docs/performance.md, "Large channel (issue 4)", holds the numbers and the command. One run:

1. starts a private redis-server (channel layer, cache and Celery broker), recreates the
   PostgreSQL database ``parley_bench4``, migrates it, and creates N users with one device
   each, all members of one channel;
2. for each system (``--systems``) starts 1-2 daphne gateways (and, for Parley, a real Celery
   worker: ``celery -A chatproject worker``, as ``make run`` does), connects the N sockets from
   this process, sends a few warm-up messages, then runs:

   * ``single``: ``--single`` messages, one every ``--single-gap`` seconds, each from another
     member (one message in flight at a time);
   * ``rate``: ``--rate`` messages/s for ``--seconds`` seconds, senders rotating over
     ``--senders`` members;

   Parley systems: ``buffered`` (``PARLEY_LARGE_CHANNEL_THRESHOLD`` below N: one batch task
   per window, one ``messages`` frame per member per window; ``buffered:250`` sets
   ``PARLEY_BATCH_WINDOW_MS=250``) and ``direct`` (the threshold above N: one ``message`` frame
   per member per message). ``relay`` is the Channels tutorial's relay (bench/relay,
   one ``RedisChannelLayer`` channel per socket) at ``--relay-rates`` messages/s;
3. prints, per scenario, send-to-deliver percentiles, the time until every member has a
   message, loss, duplicates and reordering (every member must get every seq exactly once,
   in order), frames per member per second, Redis commands per message (``INFO`` deltas on
   the private server, idle rate subtracted), the CPU of each process and the load average.

Definitions: a *delivery* is one message reaching one member other than its sender (N-1 per
message). *Latency* runs from just before the sender's frame is written to the moment a
recipient's socket has parsed the frame that carries it, both ``time.perf_counter`` in this
process. Clients behave as the browser client (static/parley/socket.js): they drop seqs they
hold, and after every frame that brought new messages they send one cumulative ``ack``.
Gateways run with every rate limiter set never to refuse.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from bench.gateway_load import (  # noqa: E402
    Server, code_under_test, machine_busy_seconds, pct, proc_cpu_seconds,
)
from tests.live import RedisServer  # noqa: E402

PG_BASE = os.environ.get("GWBENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB_NAME = os.environ.get("LARGE_BENCH_DB", "parley_bench4")
LIFTED = {
    "PARLEY_RATE_SEND": "1000000/s", "PARLEY_RATE_WS_FRAMES": "1000000/s",
    "PARLEY_RATE_WS_REFUSALS": "1000000/s", "PARLEY_RATE_TYPING": "1000000/s",
    "PARLEY_RATE_WS_TICKET": "1000000/s",
}


# --- processes ----------------------------------------------------------------------------------

def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (the Celery worker's pool processes)."""
    total = proc_cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return total
    return total + sum(tree_cpu_seconds(int(c)) for c in children)


def postgres_cpu() -> float:
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [DB_NAME])]
    return sum(proc_cpu_seconds(p) for p in pids)


class Worker:
    """``celery -A chatproject worker``, every queue, as ``make run`` starts it."""

    def __init__(self, env: dict[str, str], log_dir: Path, concurrency: int) -> None:
        self.env, self.concurrency = env, concurrency
        self.log_path = log_dir / f"celery-{int(time.time())}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "chatproject", "worker", "-l", "warning",
             "--concurrency", str(self.concurrency)],
            cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def cpu(self) -> float:
        return tree_cpu_seconds(self.process.pid) if self.process else 0.0

    def stop(self) -> str:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except FileNotFoundError:
            return ""


class RedisStats:
    def __init__(self, port: int) -> None:
        import redis

        self.client = redis.Redis(port=port)

    def snapshot(self) -> dict[str, int]:
        stats = {k.removeprefix("cmdstat_"): v["calls"] for k, v in self.client.info("commandstats").items()}
        stats["_total"] = self.client.info("stats")["total_commands_processed"]
        return stats


# --- the database ---------------------------------------------------------------------------------

def recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


@dataclass
class Member:
    index: int
    user_id: int
    device_id: str


def setup_channel(n: int) -> tuple[int, list[Member]]:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from messaging.conversations import do_create_group
    from messaging.models import Conversation, Device, User

    users = User.objects.bulk_create(
        [User(username=f"big{i}", password="!", display_name=f"Big {i}") for i in range(n)])
    devices = Device.objects.bulk_create([Device(user=u, name="bench4") for u in users])
    channel = do_create_group(creator=users[0], title="large channel", kind=Conversation.Kind.CHANNEL,
                              member_ids=[u.pk for u in users[1:]]).conversation
    return channel.pk, [Member(i, u.pk, str(d.pk)) for i, (u, d) in enumerate(zip(users, devices))]


def reset_fanout(conversation_id: int) -> int:
    """Start a system with nothing pending: the batch cursor at the stored tail."""
    from django.db.models import F

    from messaging.models import Conversation

    Conversation.objects.filter(pk=conversation_id).update(fanout_seq=F("last_seq"))
    return Conversation.objects.get(pk=conversation_id).last_seq


def stored_member_count(conversation_id: int) -> int:
    from messaging.models import Conversation

    return Conversation.objects.get(pk=conversation_id).member_count


# --- measurement ------------------------------------------------------------------------------------

@dataclass
class Scenario:
    label: str
    recipients: int
    offered_rate: float
    sent: dict[str, float] = field(default_factory=dict)       # cmid -> send time
    sender: dict[str, int] = field(default_factory=dict)       # cmid -> member index
    got: Counter = field(default_factory=Counter)              # cmid -> deliveries
    last_at: dict[str, float] = field(default_factory=dict)    # cmid -> latest delivery time
    latencies: list[float] = field(default_factory=list)
    send_ok: list[float] = field(default_factory=list)
    send_errors: Counter = field(default_factory=Counter)
    duplicates: int = 0
    reordered: int = 0
    first_send: float = 0.0
    last_send: float = 0.0
    lag_max: float = 0.0
    last_n: list[int] = field(default_factory=list)  # per socket: highest message index seen

    @property
    def expected(self) -> int:
        return len(self.sent) * self.recipients

    @property
    def delivered(self) -> int:
        return sum(min(v, self.recipients) for v in self.got.values())


class Clients:
    """The N lean sockets, one asyncio process. Parley or relay framing."""

    def __init__(self, kind: str, members: list[Member], conversation: int) -> None:
        self.kind, self.members, self.conversation = kind, members, conversation
        self.ws: list[Any] = [None] * len(members)
        self.held = [0] * len(members)          # Parley: last seq held per socket
        self.ready = [asyncio.Event() for _ in members]
        self.readers: list[asyncio.Task] = []
        self.frames: Counter = Counter()        # frame type -> count, all sockets
        self.carrying = 0                       # frames that carried at least one message
        self.acks = 0
        self.scenarios: dict[str, Scenario] = {}
        self.seq_breaks = 0
        self.seq_dups = 0
        self.unattributed = 0
        self.ack = True
        self.pulled: dict[int, int] = {}
        self.replays = 0

    # frames ----------------------------------------------------------------------------------
    def send_frame(self, i: int, cmid: str, body: str) -> str:
        if self.kind == "relay":
            return json.dumps({"message": f"{cmid} {body}"})
        return json.dumps({"type": "send", "conversation": self.conversation, "client_msg_id": cmid, "body": body})

    def _delivered(self, i: int, cmid: str, now: float) -> None:
        label, n, sender = cmid.split(".")
        sc = self.scenarios.get(label)
        if sc is None:
            self.unattributed += 1
            return
        n = int(n)
        if n == sc.last_n[i]:
            sc.duplicates += 1
            return
        if n < sc.last_n[i] and self.kind == "relay":
            # The relay has no seq: an earlier send after a later one. (Parley's order is the
            # seq the store assigned, checked in on_frame; concurrent senders may commit in
            # another order than they were sent, which is not reordering.)
            sc.reordered += 1
        sc.last_n[i] = max(sc.last_n[i], n)
        if sender == str(i):
            return  # the sender's own copy: not a delivery
        sc.got[cmid] += 1
        if sc.got[cmid] > sc.recipients:
            sc.duplicates += 1
            return
        sc.latencies.append(now - sc.sent[cmid])
        sc.last_at[cmid] = now

    async def on_frame(self, i: int, raw: str) -> None:
        now = time.perf_counter()
        frame = json.loads(raw)
        if self.kind == "relay":
            self.frames["message"] += 1
            self.carrying += 1
            self._delivered(i, frame["message"].split(" ", 1)[0], now)
            return
        kind = frame["type"]
        self.frames[kind] += 1
        if kind == "message":
            messages = [frame["message"]]
        elif kind == "messages":
            messages = frame["messages"]
            self.pulled.pop(i, None)  # a page arrived: a new pull may go out
        else:
            if kind == "ready":
                self.ready[i].set()
            elif kind == "send.ok":
                label = frame["client_msg_id"].split(".")[0]
                sc = self.scenarios.get(label)
                if sc is not None:
                    sc.send_ok.append(now - sc.sent[frame["client_msg_id"]])
            elif kind == "send.error":
                label = frame["client_msg_id"].split(".")[0]
                if label in self.scenarios:
                    self.scenarios[label].send_errors[frame.get("code", "?")] += 1
            return
        self.carrying += 1
        held = self.held[i]
        fresh = False
        gap = False
        for m in messages:
            seq = m["seq"]
            if seq <= held:
                self.seq_dups += 1      # the client drops it (socket.js: dedupe by seq)
                continue
            if seq != held + 1:
                self.seq_breaks += 1    # the server sent past a gap: socket.js stops and pulls
                gap = True
                break
            held = seq
            fresh = True
            self._delivered(i, m["client_msg_id"], now)
        self.held[i] = held
        try:
            if fresh and self.ack:  # socket.js: one cumulative ack per frame that brought new messages
                self.acks += 1
                await self.ws[i].send(json.dumps({"type": "ack", "conversation": self.conversation, "seq": held}))
            if gap or (kind == "messages" and frame.get("has_more")):
                # socket.js pull(): one replay request per cursor position
                if self.pulled.get(i) != held:
                    self.pulled[i] = held
                    self.replays += 1
                    await self.ws[i].send(json.dumps({"type": "replay", "conversation": self.conversation,
                                                      "after_seq": held}))
        except websockets.ConnectionClosed:
            pass

    # connections ----------------------------------------------------------------------------
    async def open(self, urls: list[str], cursor: int, parallel: int = 25) -> None:
        gate = asyncio.Semaphore(parallel)

        async def read(i: int) -> None:
            try:
                async for raw in self.ws[i]:
                    await self.on_frame(i, raw)
            except websockets.ConnectionClosed:
                pass

        async def one(i: int) -> None:
            async with gate:
                self.ws[i] = await connect(urls[i], max_size=None, compression=None, ping_interval=None,
                                           open_timeout=60, close_timeout=5)
                self.readers.append(asyncio.get_running_loop().create_task(read(i)))
                if self.kind == "relay":
                    self.ready[i].set()
                else:
                    self.held[i] = cursor
                    await self.ws[i].send(json.dumps({"type": "hello", "cursors": {str(self.conversation): cursor}}))
                await asyncio.wait_for(self.ready[i].wait(), 60)

        await asyncio.gather(*(one(i) for i in range(len(self.members))))

    async def close(self) -> None:
        async def one(ws) -> None:
            try:
                await asyncio.wait_for(ws.close(), 5)
            except (asyncio.TimeoutError, websockets.ConnectionClosed, OSError):
                pass

        await asyncio.gather(*(one(ws) for ws in self.ws if ws is not None))
        for task in self.readers:
            task.cancel()


@dataclass
class Probe:
    servers: list[Server]
    worker: Worker | None
    redis: RedisServer
    stats: RedisStats

    def take(self) -> dict[str, Any]:
        return {"wall": time.perf_counter(), "gateways": sum(s.cpu() for s in self.servers),
                "worker": self.worker.cpu() if self.worker else 0.0,
                "redis": proc_cpu_seconds(self.redis.process.pid), "postgres": postgres_cpu(),
                "loadgen": time.process_time(), "machine": machine_busy_seconds(),
                "redis_cmds": self.stats.snapshot()}


async def idle_redis_rate(probe: Probe, seconds: float = 3.0) -> tuple[float, dict[str, float]]:
    """Commands/s the stack sends to Redis with nothing happening (polls, maintenance)."""
    a = probe.stats.snapshot()
    t = time.perf_counter()
    await asyncio.sleep(seconds)
    b = probe.stats.snapshot()
    dt = time.perf_counter() - t
    per = {k: (b[k] - a.get(k, 0)) / dt for k in b if b[k] - a.get(k, 0) > 0}
    return per.pop("_total", 0.0), per


async def run_scenario(clients: Clients, probe: Probe, label: str, n: int, interval: float, senders: list[int],
                       body: str, drain: float, idle: tuple[float, dict[str, float]]) -> dict[str, Any]:
    sc = Scenario(label, len(clients.members) - 1, 1 / interval, last_n=[-1] * len(clients.members))
    clients.scenarios[label] = sc
    frames0, carrying0, acks0 = sum(clients.frames.values()), clients.carrying, clients.acks
    replays0 = clients.replays
    types0 = Counter(clients.frames)
    breaks0, dups0 = clients.seq_breaks, clients.seq_dups
    before = probe.take()
    start = time.perf_counter()
    for k in range(n):
        delay = start + k * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            sc.lag_max = max(sc.lag_max, -delay)
        i = senders[k % len(senders)]
        cmid = f"{label}.{k}.{i}"
        frame = clients.send_frame(i, cmid, body)
        now = time.perf_counter()
        sc.sent[cmid], sc.sender[cmid] = now, i
        sc.first_send = sc.first_send or now
        sc.last_send = now
        await clients.ws[i].send(frame)
    deadline = time.perf_counter() + drain
    while time.perf_counter() < deadline and sc.delivered < sc.expected:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # the last acks and send.ok answers
    after = probe.take()
    elapsed = after["wall"] - before["wall"]
    cpu = {k: 100 * (after[k] - before[k]) / elapsed
           for k in ("gateways", "worker", "redis", "postgres", "loadgen", "machine")}
    cpu["others"] = max(0.0, cpu.pop("machine") - sum(cpu.values()))
    cmds_after, cmds_before = after["redis_cmds"], before["redis_cmds"]
    idle_total, idle_per = idle
    raw_total = cmds_after["_total"] - cmds_before["_total"]
    by_cmd = {k: cmds_after[k] - cmds_before.get(k, 0) - idle_per.get(k, 0.0) * elapsed
              for k in cmds_after if k != "_total"}
    lat = sorted(sc.latencies)
    alls = sorted(sc.last_at[c] - sc.sent[c] for c in sc.sent if sc.got[c] >= sc.recipients)
    span = max(max(sc.last_at.values(), default=sc.last_send), sc.last_send) - sc.first_send
    msg_frames = clients.carrying - carrying0
    members = len(clients.members)
    sent = max(1, len(sc.sent))
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    result = {
        "scenario": label, "messages": len(sc.sent), "offered_msgs_per_s": round(sc.offered_rate, 2),
        "deliveries": sc.delivered, "expected": sc.expected, "lost": sc.expected - sc.delivered,
        "duplicates": sc.duplicates, "reordered": sc.reordered,
        "seq_breaks": clients.seq_breaks - breaks0, "seq_dups_dropped": clients.seq_dups - dups0,
        "send_errors": dict(sc.send_errors),
        "p50_ms": ms(pct(lat, .5)), "p95_ms": ms(pct(lat, .95)), "p99_ms": ms(pct(lat, .99)),
        "max_ms": ms(lat[-1]) if lat else None,
        "all_members_p50_ms": ms(pct(alls, .5)), "all_members_p95_ms": ms(pct(alls, .95)),
        "all_members_max_ms": ms(alls[-1]) if alls else None,
        "send_ok_p50_ms": ms(pct(sorted(sc.send_ok), .5)) if sc.send_ok else None,
        "send_ok_p95_ms": ms(pct(sorted(sc.send_ok), .95)) if sc.send_ok else None,
        "span_s": round(span, 2), "msgs_per_s": round(len(sc.sent) / span, 2) if span > 0 else None,
        "deliveries_per_s": round(sc.delivered / span) if span > 0 else None,
        "frames_per_member_per_s": round(msg_frames / members / span, 2) if span > 0 else None,
        "all_frames_per_member_per_s": round((sum(clients.frames.values()) - frames0) / members / span, 2)
        if span > 0 else None,
        "messages_per_frame": round((sc.delivered + len(sc.sent)) / max(1, msg_frames), 2),
        "replays_requested": clients.replays - replays0,
        "frames_by_type": dict(Counter(clients.frames) - types0),
        "acks_per_member_per_s": round((clients.acks - acks0) / members / span, 2) if span > 0 else None,
        "redis_cmds_per_msg": round((raw_total - idle_total * elapsed) / sent, 1),
        "redis_cmds_per_msg_raw": round(raw_total / sent, 1),
        "redis_top_per_msg": {k: round(v / sent, 1) for k, v in sorted(by_cmd.items(), key=lambda kv: -kv[1])[:8]
                              if v / sent >= 0.5},
        "cpu_percent": {k: round(v) for k, v in cpu.items()},
        "cpu_ms_per_msg": {k: round(cpu[k] * elapsed / 100 * 1000 / sent, 1)
                           for k in ("gateways", "worker", "redis", "postgres", "loadgen")},
        "generator_lag_max_ms": ms(sc.lag_max), "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    return result


def fmt(r: dict[str, Any]) -> str:
    ok = f" send.ok p50/p95 {r['send_ok_p50_ms']}/{r['send_ok_p95_ms']}" if r["send_ok_p95_ms"] is not None else ""
    return (f"{r['scenario']}: {r['messages']} msgs at {r['offered_msgs_per_s']}/s -> {r['msgs_per_s']}/s; "
            f"p50 {r['p50_ms']} p95 {r['p95_ms']} p99 {r['p99_ms']} max {r['max_ms']} ms; all-members p50/p95 "
            f"{r['all_members_p50_ms']}/{r['all_members_p95_ms']} ms;{ok}; lost {r['lost']} dup {r['duplicates']} "
            f"reord {r['reordered']} seqbreak {r['seq_breaks']} replays {r['replays_requested']} senderr {r['send_errors'] or 0}; "
            f"frames/member/s {r['frames_per_member_per_s']} (all {r['all_frames_per_member_per_s']}, "
            f"{r['messages_per_frame']} msg/frame, acks/member/s {r['acks_per_member_per_s']}, {r['frames_by_type']}); "
            f"redis cmds/msg {r['redis_cmds_per_msg']} (raw {r['redis_cmds_per_msg_raw']}) {r['redis_top_per_msg']}; "
            f"cpu% {r['cpu_percent']}; cpu ms/msg {r['cpu_ms_per_msg']}; lag {r['generator_lag_max_ms']} ms; "
            f"load {r['loadavg']}")


# --- systems ------------------------------------------------------------------------------------------

async def run_system(spec: str, args, conversation: int, members: list[Member], redis: RedisServer,
                     log_dir: Path) -> dict[str, Any]:
    from django.core.cache import cache

    name, _, window = spec.partition(":")
    noack = name.endswith("-noack")  # e.g. buffered-noack: the same, clients never ack
    name = name.removesuffix("-noack")
    subprocess.run(["redis-cli", "-p", str(redis.port), "flushall"], check=True, capture_output=True)
    database_url = f"{PG_BASE}/{DB_NAME}"
    n = len(members)
    worker = None
    if name in ("buffered", "direct"):
        env = {
            "DATABASE_URL": database_url, "REDIS_URL": redis.url, "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_CONN_MAX_AGE": "60", "DJANGO_LOG_LEVEL": "WARNING", **LIFTED,
            "PARLEY_LARGE_CHANNEL_THRESHOLD": str(n // 10 if name == "buffered" else n * 10),
            **({"PARLEY_BATCH_WINDOW_MS": window} if window else {}),
            # Direct mode makes the channel "small", so presence would go to it too: 1,000 x 1,000
            # frames while connecting. Off, so both modes compare message fan-out alone.
            **({"PARLEY_PRESENCE_MAX_CONVERSATIONS": "0"} if name == "direct" else {}),
            **dict(kv.split("=", 1) for kv in args.gateway_env),
        }
        app = "chatproject.asgi:application"
        worker = Worker(env, log_dir, args.worker_concurrency)
    elif name == "relay":
        env = {"RELAY_LAYER": "core", "REDIS_URL": redis.url, "DJANGO_SETTINGS_MODULE": "bench.relay.settings"}
        app = "bench.relay.asgi:application"
    else:
        raise SystemExit(f"unknown system {spec}")
    servers = [Server(f"{name}{i}", app, env, log_dir) for i in range(args.gateways)]
    for s in servers:
        s.start()
    if worker:
        worker.start()
    stats = RedisStats(redis.port)
    probe = Probe(servers, worker, redis, stats)
    clients = Clients("relay" if name == "relay" else "parley", members, conversation)
    clients.ack = not (args.no_ack or noack)
    results: list[dict[str, Any]] = []
    logs = ""
    try:
        t0 = time.perf_counter()
        if name == "relay":
            urls = [f"ws://127.0.0.1:{servers[m.index % len(servers)].port}/ws/relay/{conversation}/" for m in members]
            cursor = 0
        else:
            from messaging.tickets import issue_ticket

            cursor = await asyncio.to_thread(reset_fanout, conversation)
            cache.close()
            tickets = await asyncio.to_thread(
                lambda: [issue_ticket(user_id=m.user_id, device_id=m.device_id)[0] for m in members])
            urls = [f"ws://127.0.0.1:{servers[m.index % len(servers)].port}/ws/v1/?device={m.device_id}&ticket={t}"
                    for m, t in zip(members, tickets)]
        await clients.open(urls, cursor)
        print(f"  {spec}: {n} sockets ready in {time.perf_counter() - t0:.1f}s on {len(servers)} daphne; "
              f"frames so far {dict(clients.frames)}", flush=True)
        await settle(servers)
        # Warm-up (not measured): proves the worker is up and every member receives.
        senders = list(range(0, n, max(1, n // args.senders)))[:args.senders]
        warm = await run_scenario(clients, probe, f"w{name[0]}", 3, 1.0, senders, args.body, 120.0, (0.0, {}))
        print(f"  {spec}: warm-up delivered {warm['deliveries']}/{warm['expected']} "
              f"(p95 {warm['p95_ms']} ms)", flush=True)
        await asyncio.sleep(1.0)
        idle = await idle_redis_rate(probe)
        print(f"  {spec}: idle Redis {idle[0]:.1f} commands/s {({k: round(v, 1) for k, v in idle[1].items()})}",
              flush=True)
        tag = name[0] + ("n" if noack else "") + (window or "")
        plan: list[tuple[str, int, float]]
        if name == "relay":
            plan = [(f"{tag}r{int(r)}", max(1, int(r * args.relay_seconds)), 1 / r) for r in args.relay_rates]
        else:
            plan = [(f"{tag}single", args.single, args.single_gap),
                    (f"{tag}rate", int(args.rate * args.seconds), 1 / args.rate)]
        for label, count, interval in plan:
            spy = None
            if args.profile and label.endswith(args.profile_scenario):
                spy = subprocess.Popen([args.profile, "record", "-p", str(servers[0].process.pid), "-d",
                                        str(int(args.profile_seconds)), "-f", "speedscope", "-o",
                                        str(log_dir / f"{label}.speedscope.json"), "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                subprocess.Popen([args.profile, "record", "-p", str(servers[0].process.pid), "-d",
                                  str(int(args.profile_seconds)), "-f", "raw", "-o",
                                  str(log_dir / f"{label}.folded.txt"), "--nonblocking"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r = await run_scenario(clients, probe, label, count, interval, senders, args.body, args.drain, idle)
            r["system"] = spec
            results.append(r)
            print("  " + fmt(r), flush=True)
            await settle(servers)
        # Stragglers: late, or lost?
        end = time.perf_counter() + args.straggler_wait
        while time.perf_counter() < end and any(
                clients.scenarios[r["scenario"]].delivered < clients.scenarios[r["scenario"]].expected for r in results):
            await asyncio.sleep(0.1)
        for r in results:
            sc = clients.scenarios[r["scenario"]]
            r["missing_at_end"] = sc.expected - sc.delivered
        if name != "relay":
            final = set(clients.held)
            print(f"  {spec}: every socket's final seq: {sorted(final)[:5]}; frames by type {dict(clients.frames)}; "
                  f"unattributed {clients.unattributed}", flush=True)
        await clients.close()
    finally:
        for s in servers:
            logs += s.stop()
        if worker:
            logs += worker.stop()
    errors = [line for line in logs.splitlines() if "Traceback" in line or "ERROR" in line][:8]
    if errors:
        print(f"  {spec}: server errors: {errors}", flush=True)
    return {"system": spec, "gateways": len(servers), "members": n, "scenarios": results,
            "frames_by_type": dict(clients.frames), "server_errors": errors}


async def settle(servers: list[Server], quiet_percent: float = 8.0, limit: float = 20.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        before = sum(s.cpu() for s in servers)
        await asyncio.sleep(0.5)
        if 100 * (sum(s.cpu() for s in servers) - before) / 0.5 < quiet_percent * len(servers):
            break
    return time.perf_counter() - start


def verdict(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    by = {r["scenario"]: r for sys_ in results for r in sys_["scenarios"]}
    for sys_ in results:
        for r in sys_["scenarios"]:
            clean = r["lost"] == 0 and r["duplicates"] == 0 and r["reordered"] == 0 and r["seq_breaks"] == 0
            if r["scenario"].endswith("single"):
                lines.append(f"{sys_['system']}: one message to all {sys_['members']}: p95 {r['p95_ms']} ms "
                             f"(goal < 250) -> {'MET' if r['p95_ms'] < 250 and clean else 'NOT MET'}")
            elif r["scenario"].endswith("rate"):
                lines.append(f"{sys_['system']}: {r['offered_msgs_per_s']} msg/s: p95 {r['p95_ms']} ms (goal < 500), "
                             f"lost {r['lost']} dup {r['duplicates']} reord {r['reordered'] + r['seq_breaks']} -> "
                             f"{'MET' if r['p95_ms'] < 500 and clean else 'NOT MET'}")
    relay = [r for k, r in by.items() if k.startswith("rr")]
    for sys_ in results:
        if sys_["system"].startswith("relay"):
            continue
        for r in sys_["scenarios"]:
            for base in relay:
                lines.append(f"{r['scenario']} vs relay {base['offered_msgs_per_s']} msg/s: p95 ratio "
                             f"{r['p95_ms'] / base['p95_ms']:.2f}, gateway cpu ms/msg ratio "
                             f"{r['cpu_ms_per_msg']['gateways'] / max(0.1, base['cpu_ms_per_msg']['gateways']):.2f}, "
                             f"frames/member/s {r['frames_per_member_per_s']} vs {base['frames_per_member_per_s']}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default="relay,buffered,direct",
                   help="comma list of buffered[:window_ms], direct, relay; buffered-noack, direct-noack: clients never ack")
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--gateways", type=int, default=2, choices=(1, 2))
    p.add_argument("--worker-concurrency", type=int, default=2, help="Celery pool size (make run: the cores)")
    p.add_argument("--single", type=int, default=20)
    p.add_argument("--single-gap", type=float, default=1.0)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--relay-rates", default="1,5")
    p.add_argument("--relay-seconds", type=float, default=15.0)
    p.add_argument("--senders", type=int, default=20)
    p.add_argument("--drain", type=float, default=15.0)
    p.add_argument("--straggler-wait", type=float, default=10.0)
    p.add_argument("--body", default="x" * 60)
    p.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--profile", metavar="PY_SPY", help="py-spy binary: profile gateway 0 during a scenario")
    p.add_argument("--profile-scenario", default="single", help="label suffix of the scenario to profile")
    p.add_argument("--profile-seconds", type=float, default=15.0)
    p.add_argument("--no-ack", action="store_true", help="clients never ack (to price acks and receipts)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    args.relay_rates = [float(x) for x in args.relay_rates.split(",") if x]
    asyncio.run(run(args))


async def run(args) -> None:
    redis = RedisServer()
    redis.start()
    log_dir = Path(tempfile.mkdtemp(prefix="bench4-"))
    try:
        os.environ.update({
            "DATABASE_URL": f"{PG_BASE}/{DB_NAME}", "REDIS_URL": redis.url,
            "DJANGO_SETTINGS_MODULE": "chatproject.settings", "DJANGO_LOG_LEVEL": "WARNING",
            "PARLEY_MAX_MEMBERS_PER_REQUEST": str(args.members), "PARLEY_WS_TICKET_TTL_SECONDS": "900",
        })
        await asyncio.to_thread(recreate_database)
        conversation, members = await asyncio.to_thread(setup_channel, args.members)
        code = code_under_test()
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}; database {DB_NAME}; redis on "
              f"{redis.port}; channel {conversation} with "
              f"{await asyncio.to_thread(stored_member_count, conversation)} members; logs in {log_dir}", flush=True)
        print(f"code: commit {code['commit']}" + (f", uncommitted server changes: {' '.join(code['uncommitted'])}"
                                                  if code["uncommitted"] else ""), flush=True)
        results = []
        for spec in [s.strip() for s in args.systems.split(",") if s.strip()]:
            print(f"{spec}:", flush=True)
            results.append(await run_system(spec, args, conversation, members, redis, log_dir))
        print()
        for line in verdict(results):
            print(line)
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "code": code,
                                             "cores": os.cpu_count(), "results": results}, indent=1))
            print(f"results written to {args.json}")
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
