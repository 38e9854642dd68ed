"""The scenarios: each builds its own cohort, runs Parley through the stack, then the relay baseline."""
from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from bench.load import metrics
from bench.load.clients import (
    Device, Phase, Pool, Recorder, RelayPool, RelaySocket, group_by, verify,
)
from bench.load.stack import CLK_TCK, Relay, Stack

PAD = "x" * 40
P95_SUSTAIN_MS = 250.0


# --- the session: stack, Django in this process, the relay ----------------------------------------

def postgres_cpu() -> float:
    """CPU seconds of the PostgreSQL backends connected to the benchmark database (live ones)."""
    import psycopg

    from bench.load.stack import DB_NAME, PG_BASE, proc_cpu_seconds

    try:
        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
            pids = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [DB_NAME])]
    except Exception:  # noqa: BLE001
        return 0.0
    return sum(proc_cpu_seconds(pid) for pid in pids)


def machine_busy_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


class Session:
    def __init__(self, stack: Stack, ack_ms: float, via: str = "direct") -> None:
        self.stack = stack
        self.via = via
        self.ack_ms = ack_ms
        self.relay = Relay(stack)
        self.prefix = itertools.count()

    # The load generator's Django: the benchmark database and the stack's cache (tickets).
    def ticket(self, dev: Device) -> str:
        from messaging.tickets import issue_ticket

        return issue_ticket(user_id=dev.user_id, device_id=dev.device_id)[0]

    def pool(self, recorder: Recorder) -> Pool:
        if self.via == "balancer":
            urls = [f"ws://127.0.0.1:{self.stack.ports['balancer']}"]
        else:  # the reference client's way: a list of gateways, the next one tried on failure
            urls = [f"ws://127.0.0.1:{self.stack.ports[g]}" for g in GATEWAYS]
        return Pool(urls, self.ticket, recorder, ack_ms=self.ack_ms)

    def sockets_per_gateway(self) -> dict[str, int]:
        out = {}
        for name in GATEWAYS:
            text = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{self.stack.ports[name]} )"],
                                  capture_output=True, text=True).stdout
            out[name] = len(text.splitlines())
        return out

    def metrics_url(self) -> str:
        for name in ("gateway1", "gateway2"):
            if self.stack.alive(name):
                return self.stack.url(name)
        return self.stack.url("gateway1")

    def scrape(self) -> dict:
        return metrics.scrape(self.metrics_url())

    def cpu_probe(self) -> dict[str, float]:
        values = {name: self.stack.cpu(name) for name in self.stack.names}
        values["postgres"] = postgres_cpu()
        values["relay"] = self.relay.cpu()
        values["loadgen"] = time.process_time()
        values["machine"] = machine_busy_seconds()
        values["wall"] = time.monotonic()
        return values

    @staticmethod
    def cpu_percent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        wall = after["wall"] - before["wall"]
        out = {k: 100 * max(0.0, after[k] - before[k]) / wall for k in after if k not in ("wall", "machine")}
        out = {k: round(v) for k, v in out.items() if v >= 0.5}
        machine = 100 * (after["machine"] - before["machine"]) / wall
        out["others"] = round(max(0.0, machine - sum(out.values())))
        return out


def cpu_ms_per_msg(before: dict[str, float], after: dict[str, float], messages: int) -> dict[str, float]:
    """CPU milliseconds per message sent, per server component (what holds on an idle machine too)."""
    parts = {"gateways": ("gateway1", "gateway2"), "relay": ("relay",), "postgres": ("postgres",),
             "redis": ("redis1", "redis2"), "worker": ("worker", "beat"), "balancer": ("balancer",),
             "loadgen": ("loadgen",)}
    out = {}
    for part, keys in parts.items():
        cpu = sum(max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in keys)
        if cpu > 0.005 * max(1, messages) / 10:
            out[part] = round(1000 * cpu / max(1, messages), 2)
    return out


def make_cohort(tag: str, groups: int, size: int, channel_of_all: bool = False,
                kind: str = "group") -> tuple[list[dict[str, Any]], dict[int, int]]:
    """Users with one device each, in ``groups`` conversations of ``size``; (members, last seqs)."""
    from messaging.conversations import do_create_group
    from messaging.models import Conversation, Device as DeviceRow, User

    n = groups * size
    users = User.objects.bulk_create(
        [User(username=f"{tag}{i}", password="!", display_name=f"{tag} {i}") for i in range(n)])
    devices = DeviceRow.objects.bulk_create([DeviceRow(user=u, name="bench7") for u in users])
    members = [{"index": i, "user_id": u.pk, "device_id": str(d.pk), "conversations": []}
               for i, (u, d) in enumerate(zip(users, devices))]
    conv_kind = Conversation.Kind.CHANNEL if kind == "channel" else Conversation.Kind.GROUP
    for g in range(groups):
        chunk = users[g * size:(g + 1) * size]
        conversation = do_create_group(creator=chunk[0], title=f"{tag} {g}", kind=conv_kind,
                                       member_ids=[u.pk for u in chunk[1:]]).conversation
        for i in range(g * size, (g + 1) * size):
            members[i]["conversations"].append(conversation.pk)
    if channel_of_all:
        channel = do_create_group(creator=users[0], title=f"{tag} channel", kind=Conversation.Kind.CHANNEL,
                                  member_ids=[u.pk for u in users[1:]]).conversation
        for m in members:
            m["conversations"].append(channel.pk)
    ids = {c for m in members for c in m["conversations"]}
    return members, dict(Conversation.objects.filter(pk__in=ids).values_list("pk", "last_seq"))


def last_seqs(ids: set[int]) -> dict[int, int]:
    from messaging.models import Conversation

    return dict(Conversation.objects.filter(pk__in=ids).values_list("pk", "last_seq"))


def devices_of(members: list[dict[str, Any]], seqs: dict[int, int]) -> list[Device]:
    return [Device(m["index"], m["user_id"], m["device_id"], m["conversations"],
                   {c: seqs[c] for c in m["conversations"]}) for m in members]


def senders_round_robin(devices: list[Device], conversation_of: Callable[[Device], int]):
    """Consecutive sends go to different conversations: member 0 of each, then member 1..."""
    by_conv = group_by(devices, conversation_of)
    columns = list(by_conv.values())
    order = [col[i] for i in range(max(map(len, columns))) for col in columns if i < len(col)]
    return itertools.cycle([(d, conversation_of(d), len(by_conv[conversation_of(d)])) for d in order])


async def offer(rate: float, seconds: float, phase: Phase, send: Callable[[], None],
                stop: Callable[[], bool] | None = None) -> None:
    """``rate`` sends/s for ``seconds`` on a fixed schedule (late sends go out at once)."""
    n = max(1, int(rate * seconds))
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(n):
        if stop is not None and stop():
            break
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            phase.send_lag_max = max(phase.send_lag_max, -delay)
        send()


async def drain(phases: list[Phase], limit: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit and any(p.delivered < p.expected for p in phases):
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def settle(session: Session, names: list[str], quiet: float = 10.0, limit: float = 20.0) -> float:
    """Wait until the gateways are nearly idle, so connecting is not billed to the first phase."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before = sum(session.stack.cpu(n) for n in names) + session.relay.cpu()
        await asyncio.sleep(0.5)
        after = sum(session.stack.cpu(n) for n in names) + session.relay.cpu()
        if 100 * (after - before) / 0.5 < quiet * len(names):
            break
    return time.monotonic() - start


def sustained(s: dict[str, Any], offered_deliveries: float) -> bool:
    return (s["p95_ms"] < P95_SUSTAIN_MS and s["missing_after_drain"] == 0 and not s["send_errors"]
            and s["deliveries_per_s"] >= 0.95 * offered_deliveries)


GATEWAYS = ["gateway1", "gateway2"]


async def run_parley_phases(session: Session, pool: Pool, recorder: Recorder, devices: list[Device],
                            ladder: list[tuple[str, float]], seconds: float, drain_s: float,
                            members: int, stop_when_unsustained: bool) -> list[dict[str, Any]]:
    """A ladder of (label, msg/s) steps through the stack; per step: latencies, stages, CPU."""
    conversation_of = (lambda d: d.conversations[0])
    senders = senders_round_robin(devices, conversation_of)
    rows = []
    for label, rate, *own in ladder:
        secs = own[0] if own else seconds
        phase = recorder.phase(label, rate)
        before, cpu0 = await asyncio.to_thread(session.scrape), session.cpu_probe()

        def send() -> None:
            dev, conv, n = next(senders)
            pool.send(dev, conv, phase, PAD, n)

        await offer(rate, secs, phase, send)
        await drain([phase], drain_s)
        cpu1 = session.cpu_probe()
        await asyncio.sleep(1.2)  # the gateways' tick writes their tallies once a second
        after = await asyncio.to_thread(session.scrape)
        row = phase.summary()
        row["offered_deliveries_per_s"] = round(rate * members)
        row["cpu_percent"] = session.cpu_percent(cpu0, cpu1)
        row["cpu_ms_per_msg"] = cpu_ms_per_msg(cpu0, cpu1, phase.sent)
        row["stages"] = metrics.breakdown(before, after)
        row["sustained"] = sustained(row, rate * members)
        rows.append(row)
        print("   ", fmt(row), flush=True)
        if stop_when_unsustained and not row["sustained"]:
            break
    return rows


async def run_relay_phases(session: Session, recorder: Recorder, rooms: dict[int, int], size: int,
                           ladder: list[tuple[str, float]], seconds: float, drain_s: float,
                           stop_when_unsustained: bool, typing_rate: float = 0.0) -> tuple[list, dict]:
    relay = RelayPool(session.relay.urls, recorder)
    sockets = [RelaySocket(i, room) for i, room in enumerate(r for r, n in rooms.items() for _ in range(n))]
    connect_s = await relay.connect(sockets)
    await settle(session, [])
    senders = itertools.cycle(sorted(sockets, key=lambda s: (s.index % size, s.room)))
    rows = []
    typing_task = None
    if typing_rate:
        typing_task = asyncio.get_running_loop().create_task(relay_typing(relay, sockets, typing_rate))
    for label, rate, *own in ladder:
        secs = own[0] if own else seconds
        phase = recorder.phase(label, rate)
        cpu0 = session.cpu_probe()
        await offer(rate, secs, phase, lambda: relay.send(next(senders), phase, PAD, size))
        await drain([phase], drain_s)
        cpu1 = session.cpu_probe()
        row = phase.summary()
        row["offered_deliveries_per_s"] = round(rate * size)
        row["cpu_percent"] = session.cpu_percent(cpu0, cpu1)
        row["cpu_ms_per_msg"] = cpu_ms_per_msg(cpu0, cpu1, phase.sent)
        row["sustained"] = sustained(row, rate * size)
        rows.append(row)
        print("    relay", fmt(row), flush=True)
        if stop_when_unsustained and not row["sustained"]:
            break
    if typing_task:
        typing_task.cancel()
    await relay.close()
    return rows, {"sockets": len(sockets), "connect_s": round(connect_s, 1), **relay.check()}


async def relay_typing(relay: RelayPool, sockets: list[RelaySocket], rate: float) -> None:
    cycle = itertools.cycle(sockets)
    phase = Phase("typing")
    await offer(rate, 3600, phase, lambda: relay.typing(next(cycle)))


def fmt(r: dict[str, Any]) -> str:
    cpu = " ".join(f"{k}={v}%" for k, v in r.get("cpu_percent", {}).items())
    return (f"{r['phase']}: {r['offered_msgs_per_s']} msg/s -> {r['deliveries_per_s']} deliv/s; p50 {r['p50_ms']} "
            f"p95 {r['p95_ms']} p99 {r['p99_ms']} max {r['max_ms']} ms; missing {r['missing_after_drain']} "
            f"senderr {r['send_errors']} lag {r['generator_lag_max_ms']}ms; cpu {cpu}"
            + ("" if "sustained" not in r else (" OK" if r["sustained"] else " NOT SUSTAINED")))


async def connect_pool(session: Session, recorder: Recorder, members, seqs) -> tuple[Pool, list[Device], float]:
    pool = session.pool(recorder)
    devices = devices_of(members, seqs)
    pool.add(devices)
    connect_s = await pool.start(devices)
    await settle(session, GATEWAYS)
    print(f"  parley: {len(devices)} devices via {session.via}: sockets per gateway {session.sockets_per_gateway()}",
          flush=True)
    return pool, devices, connect_s


async def final_check(pool: Pool, devices: list[Device], wait: float = 30.0) -> dict[str, Any]:
    """Wait (bounded) for unconfirmed sends and deliveries, then compare every device with the database."""
    ids = {c for d in devices for c in d.conversations}
    start = time.monotonic()
    seqs: dict[int, int] = {}
    while time.monotonic() - start < wait:
        seqs = await asyncio.to_thread(last_seqs, ids)
        if not pool.unconfirmed() and all(d.cursors.get(c, 0) >= seqs[c] for d in devices for c in d.conversations):
            break
        await asyncio.sleep(0.5)
    seqs = await asyncio.to_thread(last_seqs, ids)
    result = verify(devices, seqs)
    result["unconfirmed_sends"] = pool.unconfirmed()
    result["waited_s"] = round(time.monotonic() - start, 1)
    return result


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
            "series": {"parley": _series(recorder), "relay": _series(relay_recorder)}}


def _series(recorder: Recorder) -> dict[str, list]:
    """Latency samples per phase for the plots (thinned to at most 20,000 per phase)."""
    out = {}
    for label, phase in recorder.phases.items():
        step = max(1, len(phase.samples) // 20000)
        out[label] = [(round(t, 3), round(lat * 1000, 2)) for t, lat in phase.samples[::step]]
    return out


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
            "series": {"parley": _series(recorder), "relay": _series(relay_recorder)}}


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
    from bench.load.clients import pct

    return {"n": len(values), "of": n, "p50_s": round(pct(values, 0.5), 2), "p95_s": round(pct(values, 0.95), 2),
            "p99_s": round(pct(values, 0.99), 2), "max_s": round(values[-1], 2) if values else None}


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
            "t0": wall0, "series": {"parley": _series(recorder), "relay": _series(relay_recorder)}}


# --- degraded mode ---------------------------------------------------------------------------------

async def degraded(session: Session, args) -> dict[str, Any]:
    groups, size = 20, 10
    rate = args.degraded_rate  # messages/s; 20 = 200 deliveries/s
    typing_rate = args.typing_rate
    base_s, max_wait_shed, shed_s, recover_limit = (15, 40, 15, 90) if not args.quick else (6, 20, 6, 40)
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
    watcher.degraded.clear()
    print(f"  parley: {len(devices)} devices; degraded level {start_level} after waiting "
          f"{time.monotonic() - waited:.0f}s for normal mode", flush=True)
    senders = senders_round_robin(devices, lambda d: d.conversations[0])
    typers = itertools.cycle(devices)
    level_log: list[tuple[float, float | None, float | None]] = []
    t0 = time.monotonic()
    stop_all = False
    current = {"label": "unloaded"}

    def level() -> tuple[float | None, float | None]:
        snap = metrics.scrape(session.metrics_url(), timeout=5, attempts=1)
        return metrics.gauge(snap, "parley_degraded_level"), metrics.gauge(snap, "parley_ack_timeout_ratio")

    async def watch() -> None:
        while not stop_all:
            lv, ratio = await asyncio.to_thread(level)
            level_log.append((round(time.monotonic() - t0, 1), lv, ratio))
            await asyncio.sleep(1.0)

    def shed_now() -> bool:
        return bool(watcher.degraded and watcher.degraded[-1][1])

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

    flood_on = False

    async def flood() -> None:
        interval = 1.0 / typing_rate
        nxt = time.perf_counter()
        while not stop_all:
            if flood_on:
                burst = 0
                while nxt <= time.perf_counter() and burst < 200:
                    dev = next(typers)
                    pool.typing(dev, dev.conversations[0])
                    nxt += interval
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
    current["label"] = "flood-before-shed"
    flood_on = True
    mark(f"typing flood on ({typing_rate:.0f} typing frames/s)")
    deadline = time.monotonic() + max_wait_shed
    while time.monotonic() < deadline and not shed_now():
        await asyncio.sleep(0.1)
    if shed_now():
        mark(f"degraded: shed {watcher.degraded[-1][1]}")
        # The first seconds still drain what queued before shedding began; judged apart.
        current["label"] = "flood-shed-first-5s"
        await asyncio.sleep(5)
        current["label"] = "flood-shed"
        mark("shedding for 5 s: messages from now on are the settled shed phase")
        await asyncio.sleep(shed_s)
    else:
        mark("degraded mode did not engage")
    flood_on = False
    current["label"] = "after-flood"
    mark("typing flood off")
    deadline = time.monotonic() + recover_limit
    while time.monotonic() < deadline and shed_now():
        await asyncio.sleep(0.2)
    recovered = not shed_now()
    mark("degraded mode ended by itself" if recovered else f"still degraded after {recover_limit}s")
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
            "start_level": start_level,
            "levels": level_log, "recovered": recovered, "parley": rows, "check": check,
            "typing_frames_received": typing_frames, "relay": r1 + r2, "relay_info": info,
            "series": {"parley": _series(recorder), "relay": _series(relay_recorder)}}


SCENARIOS = {"steady": steady, "ramp": ramp, "large": large, "storm": storm, "chaos": chaos, "degraded": degraded}
ORDER = ["steady", "ramp", "large", "degraded", "storm", "chaos"]
