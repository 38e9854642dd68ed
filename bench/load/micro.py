"""Micro-benchmarks for the small cuts of issue 15, each beside its baseline in the same run.

- ``render``: CPU per body rendered, the plain-line fast path (messaging.formatting,
  ``render_markdown``) against the full markdown-it + nh3 path (``_render_full``) on the
  same bodies, the benchmark's own among them.
- ``redis``: CPU per call through redis-py with its C reply parser (hiredis, not a
  dependency: ``pip install hiredis`` first) against its pure-Python one, on the gateway's
  and the send path's shapes of traffic: a hub receive of 100, 10 and 1 queued events (one
  multi-bulk reply), one GET, and the send rate limit's three-command pipeline. Measured on
  2026-12-07 (docs/benchmarks/runs/2026-12-07-small-cuts): it pays only for replies of many
  items, and a gateway's are mostly small, so Parley does not depend on it.

Rounds alternate the two sides (and which goes first), so a machine that slows down
mid-run slows both. No stack,
no database; ``redis`` needs a Redis (``--redis-url``, a scratch key ``parley:micro``).

Usage (from the repository root):

  .venv/bin/python -m bench.load.micro [--rounds 5] [--calls 2000] [--redis-url redis://127.0.0.1:6379/9]
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BODIES = {
    "benchmark body (label, time, pad)": "pa3|1765152000.123456|" + "x" * 40,
    "plain sentence": "hello there, how are you? see you at the station (platform 4) later",
    "marked-up (full path either way)": "message 3.4: a line of about sixty characters, **bold**",
}
QUEUED_EVENT = b"\x85" + b"m" * 300  # about a msgpack'd message event
KEY = "parley:micro"


def cpu_us(call: Callable[[], Any], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - started) / calls * 1e6


async def cpu_us_async(call: Callable[[], Any], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1e6


def render(rounds: int, calls: int) -> list[tuple[str, list[float], list[float]]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    import django

    django.setup()
    from messaging.formatting import _render_full, render_markdown

    rows = []
    for label, body in BODIES.items():
        assert render_markdown(body) == _render_full(body, None)
        fast, full = [], []
        for round_no in range(rounds):
            if round_no % 2:
                full.append(cpu_us(lambda: _render_full(body, None), calls))
            fast.append(cpu_us(lambda: render_markdown(body), calls))
            if not round_no % 2:
                full.append(cpu_us(lambda: _render_full(body, None), calls))
        rows.append((label, fast, full))
    return rows


def redis_calls(url: str, rounds: int, calls: int) -> list[tuple[str, list[float], list[float]]]:
    import redis
    import redis.asyncio as aredis
    from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser, _HiredisParser, _RESP2Parser

    async def run() -> list[tuple[str, list[float], list[float]]]:
        clients = {"c": aredis.Redis.from_url(url, parser_class=_AsyncHiredisParser),
                   "python": aredis.Redis.from_url(url, parser_class=_AsyncRESP2Parser)}
        sync = {"c": redis.Redis.from_url(url, parser_class=_HiredisParser),
                "python": redis.Redis.from_url(url, parser_class=_RESP2Parser)}
        await clients["c"].delete(KEY)
        await clients["c"].rpush(KEY, *[QUEUED_EVENT] * 100)

        def pipeline(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.incr(f"{KEY}:n")
            pipe.expire(f"{KEY}:n", 60)
            pipe.get(f"{KEY}:previous")
            pipe.execute()

        results: dict[str, dict[str, list[float]]] = {}
        for round_no in range(rounds):
            for parser in ("c", "python") if round_no % 2 == 0 else ("python", "c"):
                client = clients[parser]
                for events in (100, 10, 1):
                    got = results.setdefault(f"hub receive: {events} queued events in one reply", {"c": [], "python": []})
                    got[parser].append(await cpu_us_async(lambda: client.lrange(KEY, 0, events - 1), calls))
                got = results.setdefault("one GET", {"c": [], "python": []})
                got[parser].append(await cpu_us_async(lambda: client.get(f"{KEY}:previous"), calls))
                got = results.setdefault("send rate limit: INCR, EXPIRE, GET pipelined", {"c": [], "python": []})
                got[parser].append(cpu_us(lambda: pipeline(sync[parser]), calls))
        await clients["c"].delete(KEY, f"{KEY}:n")
        for client in clients.values():
            await client.aclose()
        return [(label, got["c"], got["python"]) for label, got in results.items()]

    return asyncio.run(run())


def table(title: str, new: str, base: str, rows: list[tuple[str, list[float], list[float]]]) -> str:
    lines = [f"### {title}", "", f"| shape | {new}: CPU us/call (median, range) | {base} | ratio |", "|---|---:|---:|---:|"]
    for label, fast, full in rows:
        a, b = statistics.median(fast), statistics.median(full)
        lines.append(f"| {label} | {a:.1f} ({min(fast):.1f}-{max(fast):.1f}) | {b:.1f} ({min(full):.1f}-{max(full):.1f}) "
                     f"| {a / b:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--only", choices=("render", "redis"), default=None)
    args = parser.parse_args()
    print(f"{args.rounds} alternating rounds of {args.calls} calls; load average {os.getloadavg()}\n")
    if args.only in (None, "render"):
        print(table("Rendering a body", "plain-line fast path", "markdown-it + nh3", render(args.rounds, args.calls)))
    if args.only in (None, "redis") and importlib.util.find_spec("hiredis") is None:
        print("redis-py replies: skipped, hiredis is not installed (pip install hiredis)")
    elif args.only in (None, "redis"):
        print(table("redis-py replies", "hiredis (C)", "pure Python",
                    redis_calls(args.redis_url, args.rounds, args.calls)))


if __name__ == "__main__":
    main()
