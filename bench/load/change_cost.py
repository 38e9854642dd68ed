"""What a change frame costs beside a message frame, end to end on one real gateway.

One group of ten: nine receiving devices on a real ``parley-gateway`` (daphne) over real
WebSockets, and a producer in this process calling the service functions the REST and
socket edges call (``do_send_message``, ``do_edit_message``, ``do_add_reaction``), so the
ingress is the same for both streams and the gateway's CPU is delivery alone. Phases
alternate (messages, edits, reactions, then again) in one run, so machine noise lands on
every kind alike; each kind is reported beside the message frame as a ratio.

Per kind: the producer's CPU per operation (the service call: transaction, numbering,
rendering, the after-commit publish), wall time per call, delivery latency from the call's
start to each receiver parsing the frame (p50/p95/p99, one clock, one process), the
gateway's CPU per delivered frame, and the frame's size on the wire. Every delivery is
accounted: a missing one is reported, never skipped.

A separate entry point (its own gateway, no stack):

  .venv/bin/python -m bench.load.change_cost [--ops 200] [--rate 40] [--rounds 2]
      [--database parley_bench_changes] [--redis redis://127.0.0.1:6379/6] [--report DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402

from bench.load.recorder import pct  # noqa: E402
from bench.load.stack import database_url, migrate, proc_cpu_seconds, recreate_database  # noqa: E402
from bench.load.write_path import django_setup, start_gateways  # noqa: E402

KINDS = ("message", "edit", "reaction")
CHANGE_KINDS = {"edited": "edit", "reaction": "reaction"}  # a change frame's kind -> this bench's
EMOJI = ["👍", "🎉", "❤️", "😂", "🚀", "👀"]


@dataclass
class Receiver:
    """One device: records when each seq and each change number arrived, and the frame sizes."""

    user_id: int
    device_id: str
    seq_at: dict[int, float] = field(default_factory=dict)
    change_at: dict[int, float] = field(default_factory=dict)
    frame_bytes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    top_seq: int = 0

    def take(self, raw: str | bytes, now: float) -> None:
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind == "message":
            seq = frame["message"]["seq"]
            self.seq_at.setdefault(seq, now)
            self.top_seq = max(self.top_seq, seq)
            self.frame_bytes["message"].append(len(raw))
        elif kind == "messages":
            for message in frame["messages"]:
                self.seq_at.setdefault(message["seq"], now)
                self.top_seq = max(self.top_seq, message["seq"])
        elif kind == "change":
            self.change_at.setdefault(frame["change"], now)
            self.frame_bytes[CHANGE_KINDS.get(frame["kind"], frame["kind"])].append(len(raw))
        elif kind == "changes":
            for change in frame["changes"]:
                self.change_at.setdefault(change["change"], now)
        elif kind == "ready":
            self.ready.set()


async def receive(receiver: Receiver, url: str, conversation: int, stop: asyncio.Event) -> None:
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "cursors": {str(conversation): 0},
                                  "changes": {str(conversation): 0}}))
        acked = 0

        async def ack_every_100ms() -> None:
            nonlocal acked
            while not stop.is_set():
                await asyncio.sleep(0.1)
                if receiver.top_seq > acked:
                    acked = receiver.top_seq
                    await ws.send(json.dumps({"type": "ack", "conversation": conversation, "seq": acked}))

        acks = asyncio.create_task(ack_every_100ms())
        try:
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
                except TimeoutError:
                    continue
                receiver.take(raw, time.time())
        finally:
            acks.cancel()


@dataclass
class Phase:
    kind: str
    done_at: dict[int, float] = field(default_factory=dict)  # seq or change number -> call began
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    gateway_cpu: float = 0.0


def produce(kind: str, ops: int, rate: float, conversation: int, sender: Any, messages: list[int],
            round_no: int, change_base: int) -> Phase:
    """Run ``ops`` calls of one kind at ``rate`` per second in this thread."""
    from messaging.changes import do_edit_message
    from messaging.reactions import do_add_reaction
    from messaging.send import do_send_message

    phase = Phase(kind)
    start = time.perf_counter()
    for i in range(ops):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        called, c0, w0 = time.time(), time.thread_time(), time.perf_counter()
        if kind == "message":
            result = do_send_message(sender=sender, conversation_id=conversation, client_msg_id=str(uuid.uuid4()),
                                     body=f"message {round_no}.{i}: a line of about sixty characters, **bold**")
            key = result.payload["seq"]
            messages.append(result.payload["id"])
        elif kind == "edit":
            do_edit_message(editor=sender, message_id=messages[i], body=f"edited {round_no}.{i}: now with a _twist_")
            key = change_base + i + 1
        else:
            do_add_reaction(user=sender, message_id=messages[i], emoji=EMOJI[round_no % len(EMOJI)])
            key = change_base + i + 1
        phase.done_at[key] = called
        phase.cpu.append(time.thread_time() - c0)
        phase.wall.append(time.perf_counter() - w0)
    return phase


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connections

    from bench.load.session import make_cohort
    from messaging.models import User
    from messaging.tickets import issue_ticket

    members, seqs = await asyncio.to_thread(make_cohort, "cc", 1, 10)
    conversation = next(iter(seqs))
    sender = await asyncio.to_thread(User.objects.get, pk=members[0]["user_id"])
    servers, ports = start_gateways(1, Path(tempfile.mkdtemp(prefix="change-cost-")))
    gateway_pid = servers.pid("gateway0")
    assert gateway_pid is not None
    stop = asyncio.Event()
    receivers = [Receiver(m["user_id"], m["device_id"]) for m in members[1:]]
    tasks = []
    for r in receivers:
        ticket = await asyncio.to_thread(lambda r=r: issue_ticket(user_id=r.user_id, device_id=r.device_id)[0])
        url = f"ws://127.0.0.1:{ports[0]}/ws/v1/?device={r.device_id}&ticket={ticket}"
        tasks.append(asyncio.create_task(receive(r, url, conversation, stop)))
    await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in receivers)), 30)

    phases: list[Phase] = []
    changes = 0
    try:
        for round_no in range(args.rounds):
            messages: list[int] = []
            for kind in KINDS:
                cpu0 = proc_cpu_seconds(gateway_pid)
                phase = await asyncio.to_thread(produce, kind, args.ops, args.rate, conversation, sender,
                                                messages, round_no, changes)
                if kind != "message":
                    changes += args.ops
                await wait_delivered(receivers, phase, args.drain)
                phase.gateway_cpu = proc_cpu_seconds(gateway_pid) - cpu0
                phases.append(phase)
                print(f"  round {round_no + 1} {kind}: {args.ops} ops", flush=True)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        servers.stop("gateway0")
        await asyncio.to_thread(connections.close_all)
    return summarize(phases, receivers, args)


async def wait_delivered(receivers: list[Receiver], phase: Phase, limit: float) -> None:
    deadline = time.monotonic() + limit
    arrived = (lambda r: r.seq_at) if phase.kind == "message" else (lambda r: r.change_at)
    while time.monotonic() < deadline:
        if all(all(key in arrived(r) for key in phase.done_at) for r in receivers):
            return
        await asyncio.sleep(0.05)


def summarize(phases: list[Phase], receivers: list[Receiver], args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = [p for p in phases if p.kind == kind]
        latencies, missing = [], 0
        for phase in mine:
            for r in receivers:
                arrived = r.seq_at if kind == "message" else r.change_at
                for key, done in phase.done_at.items():
                    if key in arrived:
                        latencies.append(1000 * (arrived[key] - done))
                    else:
                        missing += 1
        deliveries = len(latencies)
        sizes = [size for r in receivers for size in r.frame_bytes[kind]]
        cpu = [c for p in mine for c in p.cpu]
        wall = [w for p in mine for w in p.wall]
        rows[kind] = {
            "ops": len(cpu), "deliveries": deliveries, "missing": missing,
            "service_cpu_ms": round(1000 * sum(cpu) / max(1, len(cpu)), 3),
            "service_wall_ms_p50": round(1000 * pct(sorted(wall), 0.5), 2),
            "latency_ms": {q: round(pct(sorted(latencies), q / 100), 1) for q in (50, 95, 99)},
            "gateway_cpu_ms_per_frame": round(1000 * sum(p.gateway_cpu for p in mine) / max(1, deliveries), 3),
            "frame_bytes": round(sum(sizes) / max(1, len(sizes))),
        }
    base = rows["message"]
    for kind in KINDS:
        row = rows[kind]
        row["ratio_to_message"] = {
            "service_cpu": round(row["service_cpu_ms"] / max(1e-9, base["service_cpu_ms"]), 2),
            "gateway_cpu_per_frame": round(row["gateway_cpu_ms_per_frame"] / max(1e-9, base["gateway_cpu_ms_per_frame"]), 2),
            "latency_p95": round(row["latency_ms"][95] / max(1e-9, base["latency_ms"][95]), 2),
            "frame_bytes": round(row["frame_bytes"] / max(1, base["frame_bytes"]), 2),
        }
    return {"ops_per_phase": args.ops, "rate": args.rate, "rounds": args.rounds, "receivers": len(receivers),
            "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['receivers']} receivers on one gateway; {result['rounds']} rounds of {result['ops_per_phase']} "
        f"operations per kind at {result['rate']}/s, kinds alternating.", "",
        "| frame | service CPU ms/op | service wall p50 ms | latency p50 / p95 / p99 ms | gateway CPU ms/frame "
        "| bytes | missing | CPU ratio (service, gateway) vs message |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in result["rows"].items():
        lat, ratio = row["latency_ms"], row["ratio_to_message"]
        lines.append(f"| {kind} | {row['service_cpu_ms']} | {row['service_wall_ms_p50']} | {lat[50]} / {lat[95]} / "
                     f"{lat[99]} | {row['gateway_cpu_ms_per_frame']} | {row['frame_bytes']} | {row['missing']} | "
                     f"{ratio['service_cpu']}x, {ratio['gateway_cpu_per_frame']}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=200, help="operations per phase")
    parser.add_argument("--rate", type=float, default=40.0, help="operations per second")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--drain", type=float, default=30.0, help="seconds to wait for a phase's deliveries")
    parser.add_argument("--database", default="parley_bench_changes", help="dropped, recreated and migrated")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/6", help="the channel layer and tickets")
    parser.add_argument("--report", type=Path, help="write change_cost.json and .md here")
    args = parser.parse_args()
    recreate_database(args.database)
    os.environ["PARLEY_RATE_CHANGE"] = os.environ["PARLEY_RATE_SEND"] = "1000000/s"
    django_setup(database_url(args.database), args.redis)
    migrate(dict(os.environ))
    result = asyncio.run(run(args))
    table = markdown(result)
    print(table)
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "change_cost.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.report / "change_cost.md").write_text(table)


if __name__ == "__main__":
    main()
