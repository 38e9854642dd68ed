"""What a channel-layer group shape costs, for one conversation with M online members.

docs/performance.md, "Fan-out group shape", holds the numbers and the exact command. Shapes:

* ``socket-core``: every socket has its own RedisChannelLayer channel in the conversation's
  group (the Channels tutorial's shape).
* ``hub-core``: every gateway process has one RedisChannelLayer channel in the group and
  hands each event to its sockets' in-process queues (Parley's hub, gateway/hub.py).
* ``socket-pubsub``: every socket has its own RedisPubSubChannelLayer channel in the group.
* ``hub-pubsub``: the hub over RedisPubSubChannelLayer (for comparison).

The M sockets live in ``--processes`` receiver processes (stand-ins for daphne gateways,
M/P sockets each); a "socket" here is the task that would write to the WebSocket, so what is
timed is the layer and the in-process hand-off, not Parley's per-socket work (that is the
``gateway`` scenario of ``python -m bench.load``). This process sends ``--messages`` messages one after another, each
after every socket got the previous one, and measures:

* the ``group_send`` call time in the sender;
* the time from the call until every one of the M sockets has the message (receivers stamp
  ``time.monotonic()``, one clock for every process on the machine);
* Redis commands per message, from ``redis-cli info commandstats`` deltas on a private
  redis-server (commands run inside a Lua script count too, under their own names);
* the receivers' CPU time per message.

Connect cost: a user in 100 conversations opens a socket; what does joining the 100
groups cost (``group_add`` calls, time, Redis commands), per shape.

    .venv/bin/python -m bench.load.fanout_shapes [--members 10,100,1000] [--json FILE]

A separate entry point, not a scenario of ``python -m bench.load``: it times the channel
layer alone, between processes of its own, with no Parley server, database or client. Its
private redis-server runs on a free port under bench/load's process runner; percentiles are
bench/load's.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load.recorder import pct as nearest_rank  # noqa: E402
from bench.load.stack import Processes, free_port, redis_ping  # noqa: E402

SHAPES = ("socket-core", "hub-core", "socket-pubsub", "hub-pubsub")
PAYLOAD = "x" * 400  # about the size of a message event with its payload


def make_layer(shape: str, redis_url: str):
    if shape.endswith("pubsub"):
        from channels_redis.pubsub import RedisPubSubChannelLayer

        return RedisPubSubChannelLayer(hosts=[redis_url])
    from channels_redis.core import RedisChannelLayer

    # Parley's settings: capacity 1000 (PARLEY_CHANNEL_CAPACITY); expiry as in production.
    return RedisChannelLayer(hosts=[redis_url], capacity=1000, expiry=60)


# --- Redis accounting ----------------------------------------------------------------------------

def redis_cli(port: int, *argv: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *argv], check=True, capture_output=True, text=True).stdout


def command_counts(port: int) -> dict[str, int]:
    counts = {}
    for line in redis_cli(port, "info", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            counts[name] = int(rest.split("calls=", 1)[1].split(",", 1)[0])
    return counts


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in delta.items() if v and k not in ("info", "config|resetstat")}


# --- receiver processes ---------------------------------------------------------------------------

def receiver_main(conn, shape: str, redis_url: str, sockets: int, group: str) -> None:
    asyncio.run(_receiver(conn, shape, redis_url, sockets, group))


async def _receiver(conn, shape: str, redis_url: str, sockets: int, group: str) -> None:
    loop = asyncio.get_running_loop()
    layer = make_layer(shape, redis_url)
    have: dict[int, int] = {}
    first: dict[int, float] = {}

    def got(event: dict[str, Any]) -> None:
        i = event["i"]
        now = time.monotonic()
        first.setdefault(i, now)
        have[i] = have.get(i, 0) + 1
        if have[i] == sockets:
            conn.send(("got", i, first.pop(i), now))
            del have[i]

    tasks = []
    started = time.monotonic()
    if shape.startswith("socket"):
        channels = [await layer.new_channel() for _ in range(sockets)]
        for channel in channels:
            await layer.group_add(group, channel)

        async def socket_loop(channel: str) -> None:
            while True:
                got(await layer.receive(channel))

        tasks = [loop.create_task(socket_loop(c)) for c in channels]
    else:
        channel = await layer.new_channel("gateway.")
        await layer.group_add(group, channel)
        queues = [asyncio.Queue() for _ in range(sockets)]

        async def hub_loop() -> None:
            while True:
                event = await layer.receive(channel)
                for queue in queues:
                    queue.put_nowait(event)

        async def socket_loop(queue: asyncio.Queue) -> None:
            while True:
                got(await queue.get())

        tasks = [loop.create_task(hub_loop())] + [loop.create_task(socket_loop(q)) for q in queues]
    setup = time.monotonic() - started
    await asyncio.sleep(0.2)  # let every receive be waiting before the first send
    conn.send(("ready", setup))
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "cpu":
            conn.send(("cpu", time.process_time()))
        elif command == "stop":
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(("stopped",))


# --- the sender -----------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    return nearest_rank(sorted(values), q)


async def measure(shape: str, members: int, args, redis_port: int, redis_url: str) -> dict[str, Any]:
    redis_cli(redis_port, "flushall")
    group = f"conv.{members}"
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    per_process = [members // args.processes + (1 if i < members % args.processes else 0)
                   for i in range(args.processes)]
    for n in per_process:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=receiver_main, args=(child, shape, redis_url, n, group), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    loop = asyncio.get_running_loop()

    async def recv(pipe, timeout: float):
        if not await loop.run_in_executor(None, pipe.poll, timeout):
            raise TimeoutError
        return pipe.recv()

    try:
        setups = [(await recv(p, 120))[1] for p in pipes]
        layer = make_layer(shape, redis_url)
        # One untimed send warms the sender's connection pool.
        await layer.group_send(group, {"type": "conv.message", "i": -1, "payload": PAYLOAD})
        for pipe in pipes:
            await recv(pipe, 10)
        for pipe in pipes:
            pipe.send("cpu")
        cpu_before = [(await recv(p, 10))[1] for p in pipes]
        before = command_counts(redis_port)
        calls, alls, lost = [], [], 0
        for i in range(args.messages):
            t0 = time.monotonic()
            await layer.group_send(group, {"type": "conv.message", "i": i, "payload": PAYLOAD})
            calls.append(time.monotonic() - t0)
            last = 0.0
            try:
                for pipe in pipes:
                    reply = await recv(pipe, args.timeout)
                    last = max(last, reply[3])
                alls.append(last - t0)
            except TimeoutError:
                lost += 1
                break  # a receiver is missing a message; the rest of this series is void
        after = command_counts(redis_port)
        for pipe in pipes:
            pipe.send("cpu")
        cpu_after = [(await recv(p, 10))[1] for p in pipes]
        sent = len(calls)
        commands = command_delta(before, after)
        total = sum(commands.values())
        return {
            "shape": shape, "members": members, "processes": args.processes, "messages": sent,
            "setup_s_max": round(max(setups), 3),
            "group_send_ms_p50": round(pct(calls, 0.5) * 1000, 2),
            "group_send_ms_p95": round(pct(calls, 0.95) * 1000, 2),
            "all_received_ms_p50": round(pct(alls, 0.5) * 1000, 2),
            "all_received_ms_p95": round(pct(alls, 0.95) * 1000, 2),
            "lost": lost,
            "redis_commands_per_message": round(total / sent, 1),
            "redis_commands_breakdown": {k: round(v / sent, 1) for k, v in sorted(commands.items(), key=lambda x: -x[1])},
            "receiver_cpu_ms_per_message": round(1000 * sum(a - b for a, b in zip(cpu_after, cpu_before)) / sent, 2),
        }
    finally:
        for pipe in pipes:
            try:
                pipe.send("stop")
            except (BrokenPipeError, OSError):
                pass
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


async def connect_cost(shape: str, conversations: int, users: int, redis_port: int, redis_url: str) -> dict[str, Any]:
    """Users in the same ``conversations`` conversations open sockets on one gateway process.

    ``cold`` is the first user of the process: every group is new to it. ``warm`` is every
    later user: the per-socket core layer still adds its own channel to each group; the hub
    (and the pub/sub layer, which subscribes once per process) already follow them.
    """
    redis_cli(redis_port, "flushall")
    layer = make_layer(shape, redis_url)
    groups = [f"conv.{c}" for c in range(conversations)]
    followed: set[str] = set()
    hub_channel = await layer.new_channel("gateway.") if shape.startswith("hub") else None
    times = []
    counts = [command_counts(redis_port)]
    for _ in range(users):
        t0 = time.monotonic()
        if hub_channel is None:
            channel = await layer.new_channel()
            for group in groups:
                await layer.group_add(group, channel)
        else:
            for group in groups:  # the hub: a local set lookup, Redis only for a new group
                if group not in followed:
                    followed.add(group)
                    await layer.group_add(group, hub_channel)
        times.append(time.monotonic() - t0)
        if len(counts) == 1:
            counts.append(command_counts(redis_port))
    counts.append(command_counts(redis_port))
    cold = command_delta(counts[0], counts[1])
    warm = command_delta(counts[1], counts[2])
    if shape.endswith("pubsub"):
        await layer.flush()
    else:
        await layer.close_pools()
    return {
        "shape": shape, "conversations": conversations, "users": users,
        "cold_ms": round(times[0] * 1000, 2),
        "cold_redis_commands": sum(cold.values()), "cold_breakdown": cold,
        "warm_ms_p50": round(pct(times[1:], 0.5) * 1000, 3),
        "warm_ms_p95": round(pct(times[1:], 0.95) * 1000, 3),
        "warm_redis_commands_per_user": round(sum(warm.values()) / max(1, users - 1), 1),
        "warm_breakdown": warm,
    }


class RedisServer:
    """A private redis-server on a free port, run by bench/load's process runner."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.processes = Processes()
        self.processes.add("redis", f"exec redis-server --port {self.port} --bind 127.0.0.1 --save '' --appendonly no",
                           ready=lambda: redis_ping(self.port))

    def start(self) -> None:
        self.processes.start("redis")

    def stop(self) -> None:
        self.processes.stop_all()


async def run(args) -> None:
    redis = RedisServer()
    redis.start()
    results: dict[str, Any] = {"cores": os.cpu_count(), "fanout": [], "connect": []}
    deadline = time.monotonic() + args.budget
    try:
        print(f"machine: {os.cpu_count()} cores; private redis on {redis.port}; "
              f"{args.processes} receiver processes; {args.messages} messages per series", flush=True)
        for members in args.members:
            for shape in args.shapes:
                if time.monotonic() > deadline:
                    print(f"{shape} M={members}: skipped, time budget spent")
                    continue
                r = await measure(shape, members, args, redis.port, redis.url)
                results["fanout"].append(r)
                print(f"{shape:14} M={members:5}: group_send p50 {r['group_send_ms_p50']:7.2f} p95 "
                      f"{r['group_send_ms_p95']:7.2f} ms | all received p50 {r['all_received_ms_p50']:7.2f} p95 "
                      f"{r['all_received_ms_p95']:7.2f} ms | redis cmds/msg {r['redis_commands_per_message']:6.1f} "
                      f"{r['redis_commands_breakdown']} | receiver cpu {r['receiver_cpu_ms_per_message']} ms/msg"
                      f"{' | LOST' if r['lost'] else ''} | setup {r['setup_s_max']} s", flush=True)
        for shape in args.shapes:
            r = await connect_cost(shape, args.conversations, args.users, redis.port, redis.url)
            results["connect"].append(r)
            print(f"connect {shape:14}: {json.dumps({k: v for k, v in r.items() if k != 'shape'})}", flush=True)
    finally:
        redis.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"results written to {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="10,100,1000")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--processes", type=int, default=2, help="receiver processes (gateways)")
    parser.add_argument("--messages", type=int, default=50, help="messages per series")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for one message everywhere")
    parser.add_argument("--conversations", type=int, default=100, help="connect cost: conversations per user")
    parser.add_argument("--users", type=int, default=20, help="connect cost: users connecting one after another")
    parser.add_argument("--budget", type=float, default=400.0, help="seconds; later series are skipped")
    parser.add_argument("--quick", action="store_true", help="fewer messages and users")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.members = [int(x) for x in args.members.split(",")]
    args.shapes = [s for s in args.shapes.split(",") if s]
    unknown = set(args.shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shapes {sorted(unknown)}; pick from {SHAPES}")
    if args.quick:
        args.messages, args.users = 15, 6
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
