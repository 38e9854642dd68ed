"""What every scenario shares: the session (stack, relay, Django in this process), cohorts,
the send schedule, drains, the Parley and relay phase ladders, and the final check.

A phase sends on a fixed schedule (``offer``: late sends go out at once, the largest slip is
reported), then waits up to a drain for its deliveries, and reads CPU per process group from
/proc (``cpu_percent``; ``others`` is the rest of the machine) and, for Parley, the stage
histograms from /metrics before and after.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from bench.load import metrics
from bench.load.clients import Device, Pool, verify
from bench.load.recorder import Phase, Recorder
from bench.load.relayclients import RelayPool, RelaySocket
from bench.load.stack import GATEWAYS, ROOT, Relay, Stack, machine_busy_seconds, postgres_cpu

PAD = "x" * 40
P95_SUSTAIN_MS = 250.0


class Session:
    def __init__(self, stack: Stack, ack_ms: float, via: str = "direct", profile_dir: Path | None = None,
                 profile_rate: int = 100) -> None:
        self.stack = stack
        self.via = via
        self.ack_ms = ack_ms
        self.relay = Relay(stack)
        self.prefix = itertools.count()
        self.profile_dir = profile_dir
        self.profile_rate = profile_rate

    @contextlib.asynccontextmanager
    async def profiled(self, label: str, names: list[str]) -> AsyncIterator[None]:
        """py-spy on the named processes while the block runs: one flame graph (SVG) each, in
        ``--profile DIR`` as ``<label>-<name>.svg``. Without ``--profile`` it does nothing.

        py-spy samples from outside (``--nonblocking``: the process is never paused), 100 times a
        second (``--profile-rate``), only the thread holding the GIL (``--gil``): the graph is where the process's
        Python CPU went, whichever thread spent it, and waits (I/O, locks, idle) are left out.
        """
        spy = shutil.which("py-spy", path=str(ROOT / ".venv" / "bin")) or shutil.which("py-spy")
        if self.profile_dir is None or spy is None:
            if self.profile_dir is not None:
                print("  --profile: py-spy not found (pip install py-spy)", flush=True)
            yield
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        spies = []
        for name in names:
            pid = self.stack.pid(name)
            if pid is None:
                continue
            out = self.profile_dir / f"{label}-{name}.svg"
            spies.append(subprocess.Popen([spy, "record", "--pid", str(pid), "--output", str(out), "--rate", str(self.profile_rate),
                                           "--nonblocking", "--gil", "--format", "flamegraph"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        try:
            yield
        finally:
            for spy_proc in spies:
                spy_proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            for spy_proc in spies:
                try:
                    await asyncio.to_thread(spy_proc.wait, 60)
                except subprocess.TimeoutExpired:
                    spy_proc.kill()

    def swap_relay(self, count: int = 2, layer: str = "core") -> Relay:
        """Replace the running relay with ``count`` daphne processes on ``layer``."""
        self.relay.stop()
        self.relay = Relay(self.stack, count=count, layer=layer)
        self.relay.start()
        return self.relay

    # The load generator's Django: the benchmark database and the stack's cache (tickets).
    def ticket(self, dev: Device) -> str:
        from messaging.tickets import issue_ticket

        return issue_ticket(user_id=dev.user_id, device_id=dev.device_id)[0]

    def pool(self, recorder: Recorder, ack_ms: float | None = None, gateways: list[str] | None = None) -> Pool:
        if self.via == "balancer":
            urls = [f"ws://127.0.0.1:{self.stack.ports['balancer']}"]
        else:  # the reference client's way: a list of gateways, the next one tried on failure
            urls = [f"ws://127.0.0.1:{self.stack.ports[g]}" for g in gateways or GATEWAYS]
        return Pool(urls, self.ticket, recorder, ack_ms=self.ack_ms if ack_ms is None else ack_ms)

    def sockets_per_gateway(self) -> dict[str, int]:
        out = {}
        for name in GATEWAYS:
            if not self.stack.alive(name):
                continue
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
        values["postgres"] = postgres_cpu(self.stack.database)
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
    """Users with one device each, in ``groups`` conversations of ``size`` (``kind`` group,
    channel, or direct for pairs); (members, last seqs)."""
    from messaging.conversations import do_create_group, do_get_or_create_direct
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
        if kind == "direct":
            conversation = do_get_or_create_direct(creator=chunk[0], other_user_id=chunk[1].pk).conversation
        else:
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


def group_by(items, key) -> dict[Any, list]:
    out: dict[Any, list] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return out


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


def series(recorder: Recorder) -> dict[str, list]:
    """Latency samples per phase for the plots (thinned to at most 20,000 per phase)."""
    out = {}
    for label, phase in recorder.phases.items():
        step = max(1, len(phase.samples) // 20000)
        out[label] = [(round(t, 3), round(lat * 1000, 2)) for t, lat in phase.samples[::step]]
    return out
