"""The durable write path's results (bench/load/write_path.py): runs summed over rounds, the
machine, and the Markdown table."""
from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.load.recorder import pct
from bench.load.stack import ROOT


@dataclass
class Run:
    """One path in one scenario, summed over rounds."""

    path: str
    scenario: str
    sends: int
    seconds: float
    latencies: list[float]
    parley_cpu: float  # CPU seconds of the processes running Parley (or the raw client)
    busy: int  # machine CPU jiffies busy / in total during the runs, whatever ran
    total: int
    rounds: list[float]  # sends/s of each round

    def __add__(self, other: "Run") -> "Run":
        return Run(self.path, self.scenario, self.sends + other.sends, self.seconds + other.seconds,
                   self.latencies + other.latencies, self.parley_cpu + other.parley_cpu,
                   self.busy + other.busy, self.total + other.total, self.rounds + other.rounds)

    @property
    def rate(self) -> float:
        return self.sends / self.seconds

    def percentile(self, p: int) -> float:
        return pct(sorted(self.latencies), p / 100) * 1000


def machine_description() -> str:
    from django.db import connection

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version'), current_setting('synchronous_commit'), "
                       "current_setting('fsync')")
        version, sync_commit, fsync = cursor.fetchone()
    import django
    import psycopg

    return (f"{cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB RAM; PostgreSQL {version} on the same machine "
            f"(synchronous_commit={sync_commit}, fsync={fsync}); Python {platform.python_version()}, "
            f"Django {django.get_version()}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__})")


def code_version() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"commit {git('rev-parse', '--short', 'HEAD') or 'unknown'}" + (" (with uncommitted changes)" if dirty else "")


def report(runs: list[Run], args, command: str, machine: str, load: str, gap_free: bool, spread: int,
           warmup: int) -> str:
    names = {"hot": "1 (hot)", "spread": f"{spread:,}"}
    lines = [
        f"## Durable write path: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `{command}` at {code_version()}",
        f"- Machine: {machine}",
        f"- Load average before the run: {load}",
        f"- {args.workers} concurrent workers on every path ({args.workers} processes; REST: {args.workers} "
        f"keep-alive HTTP clients over {args.daphnes} gateway processes, parley-gateway). {args.rounds} rounds, each running "
        f"every path for {args.seconds:g} s per scenario (order rotated per round, after {warmup} warm-up "
        f"sends per worker); every send a new client_msg_id; fan-out layer: "
        f"{'Redis' if args.redis_url else 'in-memory'}.",
        "- Parley CPU: CPU time of the processes running Parley (service workers; the gateways for REST; the "
        "psycopg client for raw) per send. PostgreSQL's own CPU is not in it; machine busy counts everything "
        "on the machine, including other work.",
        "",
        "| path | conversations | sends/s | per round | p50 ms | p95 ms | p99 ms | Parley CPU ms/send | machine busy |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(f"| {r.path} | {names[r.scenario]} | {r.rate:,.0f} | {' / '.join(f'{x:,.0f}' for x in r.rounds)} | "
                     f"{r.percentile(50):.1f} | {r.percentile(95):.1f} | {r.percentile(99):.1f} | "
                     f"{r.parley_cpu / r.sends * 1000:.2f} | {r.busy / r.total:.0%} |")
    lines += ["", "Ratio to the raw ceiling (same scenario, same concurrency):", ""]
    by_key = {(r.path, r.scenario): r for r in runs}
    for scenario in args.scenarios:
        raw = by_key.get(("raw", scenario))
        for path in args.paths:
            if path != "raw" and raw and (path, scenario) in by_key:
                lines.append(f"- {path} / raw, {names[scenario]}: {by_key[(path, scenario)].rate / raw.rate:.0%}")
    lines += ["", f"Seqs gap-free (1..last_seq in every conversation) after every run: {'yes' if gap_free else 'NO'}", ""]
    return "\n".join(lines)
