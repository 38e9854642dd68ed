#!/usr/bin/env python
"""Durable write path benchmark (issue 2, "Measure"). A script, not a test.

Durable sends per second on PostgreSQL, into one hot conversation and spread over 1,000
conversations, with the same number of concurrent workers on every path:

  service    messaging.send.do_send_message, one worker process each (django.setup() in
             each: processes, not threads, so the GIL does not cap the service);
  rest       POST /api/v1/conversations/{id}/messages over real HTTP (keep-alive) to daphne
             processes this script starts on free ports;
  raw        the ceiling: the same transaction with plain psycopg (BEGIN; UPDATE conversation
             ... RETURNING last_seq; INSERT message; UPDATE the sender's watermarks; COMMIT);
  raw+reads  the service's exact statements without Django: the membership read and the
             idempotency lookup, then the raw transaction.

Every send is a new client_msg_id (no retries) and is durable when it returns: committed with
synchronous_commit as the server has it. After each run the script checks that every
conversation's seqs are exactly 1..last_seq.

Usage (from the repository root):

  .venv/bin/python bench/write_path.py [--seconds 4] [--rounds 3] [--workers 4] [--daphnes N]
      [--paths service,rest,raw,raw+reads] [--scenarios hot,spread]
      [--database-url postgres://postgres@127.0.0.1:5432/parley_bench] [--redis-url URL]

The database is created if missing, migrated and FLUSHED: its name must contain "bench".
Without --redis-url the fan-out after commit publishes to the in-memory channel layer.
The result table goes to stdout and to bench/results/write_path-<UTC time>.md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SPREAD_CONVERSATIONS = 1000
WARMUP_SENDS = 5
UNLIMITED = "1000000/s"
BODY = "The durable write path: one seq, one row, one commit. " * 2

# The raw transaction: what allocate_seq and do_send_message do, as SQL.
RAW_TAKE_SEQ = ("UPDATE messaging_conversation SET last_seq = last_seq + 1, last_activity_at = now() "
                "WHERE id = %s RETURNING last_seq")
RAW_INSERT = ("INSERT INTO messaging_message (conversation_id, seq, sender_id, client_msg_id, body, created_at, state) "
              "VALUES (%s, %s, %s, %s, %s, now(), 'visible') RETURNING id")
RAW_WATERMARKS = ("UPDATE messaging_membership SET delivered_seq = GREATEST(delivered_seq, %s), "
                  "read_seq = GREATEST(read_seq, %s) WHERE id = %s")
# The two reads do_send_message makes before its transaction (access_membership, _find_prior_send).
RAW_MEMBERSHIP = ("SELECT m.id, m.role, m.delivered_seq, m.read_seq, c.id, c.kind, c.last_seq, c.member_count "
                  "FROM messaging_membership m JOIN messaging_conversation c ON c.id = m.conversation_id "
                  "WHERE m.conversation_id = %s AND m.user_id = %s ORDER BY m.id LIMIT 1")
RAW_LOOKUP = "SELECT id, seq, body FROM messaging_message WHERE sender_id = %s AND client_msg_id = %s LIMIT 1"


# --- Setup (main process) ---------------------------------------------------------------------

def django_setup(database_url: str, redis_url: str | None) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("CHANNEL_REDIS_URLS", None)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatproject.settings"
    # The per-user send limit stays on the path (its counter is paid) but never refuses.
    os.environ["PARLEY_RATE_SEND"] = UNLIMITED
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def ensure_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    name = urllib.parse.urlparse(database_url).path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"refusing to flush database {name!r}: a bench database's name contains 'bench'")
    admin_url = urllib.parse.urlparse(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@dataclass
class Fixture:
    senders: list[int]  # one sending user per worker
    tokens: list[str]
    hot: int
    spread: list[int]
    # membership id of (conversation, sender), for the raw paths
    memberships: dict[tuple[int, int], int] = field(default_factory=dict)


def build_fixture(workers: int) -> Fixture:
    """A fresh store: one owner and one sender per worker, members of every conversation."""
    from django.core.management import call_command
    from django.db import connections
    from rest_framework.authtoken.models import Token

    from messaging.models import Conversation, Membership, User

    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    people = User.objects.bulk_create([User(username="owner")] + [User(username=f"sender{i}") for i in range(workers)])
    owner, senders = people[0], people[1:]
    tokens = [Token.objects.create(user=sender).key for sender in senders]
    conversations = Conversation.objects.bulk_create(
        [Conversation(kind=Conversation.Kind.GROUP, title="hot", created_by=owner, member_count=len(people))]
        + [Conversation(kind=Conversation.Kind.GROUP, title=f"room {n}", created_by=owner, member_count=len(people))
           for n in range(SPREAD_CONVERSATIONS)]
    )
    Membership.objects.bulk_create([
        Membership(conversation=c, user=u, role=Membership.Role.OWNER if u == owner else Membership.Role.MEMBER)
        for c in conversations for u in people
    ], batch_size=2000)
    sender_ids = [s.pk for s in senders]
    memberships = {
        (c, u): m for m, c, u in Membership.objects.filter(user_id__in=sender_ids)
        .values_list("pk", "conversation_id", "user_id")
    }
    connections.close_all()
    return Fixture(senders=sender_ids, tokens=tokens, hot=conversations[0].pk,
                   spread=[c.pk for c in conversations[1:]], memberships=memberships)


def seqs_are_gap_free() -> bool:
    """Every conversation's messages are exactly 1..last_seq (seq is unique and >= 1 per conversation)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM messaging_conversation c LEFT JOIN ("
            "  SELECT conversation_id, count(*) AS n, max(seq) AS top FROM messaging_message GROUP BY 1"
            ") m ON m.conversation_id = c.id WHERE coalesce(m.n, 0) <> c.last_seq OR coalesce(m.top, 0) <> c.last_seq"
        )
        return cursor.fetchone()[0] == 0


# --- Daphne for the REST path -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daphnes(count: int, database_url: str, redis_url: str | None, log: Path) -> list[tuple[subprocess.Popen, int]]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CHANNEL_REDIS_URLS")}
    env.update({
        "DATABASE_URL": database_url,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Persistent database connections, as in production.
        "PARLEY_RATE_SEND": UNLIMITED,
        "DJANGO_CONN_MAX_AGE": "60",
        "DJANGO_LOG_LEVEL": "WARNING",
    })
    if redis_url:
        env["REDIS_URL"] = redis_url
    daphne = Path(sys.executable).with_name("daphne")
    servers = []
    with log.open("ab") as sink:
        for _ in range(count):
            port = free_port()
            # -v 0: no access log line per request (it is not the write path).
            process = subprocess.Popen([str(daphne), "-v", "0", "-b", "127.0.0.1", "-p", str(port),
                                        "chatproject.asgi:application"],
                                       cwd=ROOT, env=env, stdout=sink, stderr=sink)
            servers.append((process, port))
    deadline = time.monotonic() + 60
    for process, port in servers:
        while True:
            if process.poll() is not None:
                sys.exit(f"daphne on port {port} exited with {process.returncode}; see {log}")
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"daphne on port {port} did not answer /healthz; see {log}")
            time.sleep(0.2)
    return servers


def stop_daphnes(servers: list[tuple[subprocess.Popen, int]]) -> None:
    for process, _ in servers:
        process.terminate()
    for process, _ in servers:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine: other load shows up here."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --- Workers (one process each) -----------------------------------------------------------------

def make_sender(path: str, spec: dict):
    """A function (conversation_id, client_msg_id) -> None that makes one durable send."""
    sender = spec["sender"]
    if path == "service":
        django_setup(spec["database_url"], spec["redis_url"])
        from messaging.send import do_send_message
        from messaging.models import User

        user = User.objects.get(pk=sender)

        def send(conversation_id: int, key: str) -> None:
            do_send_message(sender=user, conversation_id=conversation_id, client_msg_id=key, body=BODY)

        return send

    if path in ("raw", "raw+reads"):
        import psycopg

        db = psycopg.connect(spec["database_url"])
        memberships = spec["memberships"]
        with_reads = path == "raw+reads"

        def send(conversation_id: int, key: str) -> None:
            if with_reads:
                db.execute(RAW_MEMBERSHIP, [conversation_id, sender]).fetchone()
                db.execute(RAW_LOOKUP, [sender, key]).fetchone()
                db.commit()  # Django reads in autocommit: each read is its own transaction
            seq = db.execute(RAW_TAKE_SEQ, [conversation_id]).fetchone()[0]
            db.execute(RAW_INSERT, [conversation_id, seq, sender, key, BODY]).fetchone()
            db.execute(RAW_WATERMARKS, [seq, seq, memberships[conversation_id]])
            db.commit()

        return send

    if path == "rest":
        connection = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=30)
        headers = {"Authorization": f"Token {spec['token']}", "Content-Type": "application/json"}

        def send(conversation_id: int, key: str) -> None:
            connection.request("POST", f"/api/v1/conversations/{conversation_id}/messages",
                               body=json.dumps({"client_msg_id": key, "body": BODY}), headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 201:
                raise RuntimeError(f"REST send answered {response.status}: {payload[:200]!r}")

        return send

    raise ValueError(path)


def worker_loop(path: str, index: int, spec: dict, commands: mp.Queue, results: mp.Queue, ready: mp.Barrier) -> None:
    """One persistent worker: set up once, then one timed run per command (None ends it)."""
    try:
        send = make_sender(path, spec)
    except BaseException as error:  # noqa: BLE001 - reported by the main process
        ready.abort()
        results.put({"error": f"{type(error).__name__}: {error}"})
        return
    pick = random.Random(index).choice
    n = 0
    while (command := commands.get()) is not None:
        conversations, seconds = command
        try:
            for _ in range(WARMUP_SENDS):
                send(pick(conversations), f"{path}-{index}-{n}")
                n += 1
            ready.wait(timeout=120)
            latencies = []
            cpu, end = time.process_time(), time.perf_counter() + seconds
            while (started := time.perf_counter()) < end:
                send(pick(conversations), f"{path}-{index}-{n}")
                n += 1
                latencies.append(time.perf_counter() - started)
            results.put({"latencies": latencies, "cpu": time.process_time() - cpu, "error": None})
        except BaseException as error:  # noqa: BLE001 - reported by the main process
            ready.abort()
            results.put({"error": f"{type(error).__name__}: {error}"})
            return


class WorkerPool:
    """The workers of one path, kept alive across runs so rounds can interleave the paths cheaply."""

    def __init__(self, path: str, fixture: Fixture, args, servers) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no connection crosses a fork
        self.path, self.servers = path, servers
        self.ready, self.results = ctx.Barrier(args.workers + 1), ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(args.workers)]
        self.processes = []
        for i, commands in enumerate(self.commands):
            sender = fixture.senders[i]
            spec = {"sender": sender, "database_url": args.database_url, "redis_url": args.redis_url}
            if path.startswith("raw"):
                spec["memberships"] = {c: m for (c, u), m in fixture.memberships.items() if u == sender}
            if path == "rest":
                spec.update(token=fixture.tokens[i], port=servers[i % len(servers)][1])
            self.processes.append(ctx.Process(target=worker_loop, args=(path, i, spec, commands, self.results,
                                                                        self.ready), daemon=True))
        for process in self.processes:
            process.start()

    def run(self, scenario: str, conversations: list[int], seconds: float) -> "Run":
        for commands in self.commands:
            commands.put((conversations, seconds))
        try:
            self.ready.wait(timeout=300)
        except Exception:  # noqa: BLE001 - a worker failed; its error is in the queue
            pass
        servers = [p.pid for p, _ in self.servers] if self.path == "rest" else []
        server_cpu = [process_cpu_seconds(pid) for pid in servers]
        busy, total = machine_cpu()
        outcomes = [self.results.get(timeout=seconds + 300) for _ in self.commands]
        busy, total = machine_cpu()[0] - busy, machine_cpu()[1] - total
        errors = [o["error"] for o in outcomes if o["error"]]
        if errors:
            raise RuntimeError(f"{self.path}/{scenario} failed: {errors[0]}")
        cpu = (sum(process_cpu_seconds(pid) for pid in servers) - sum(server_cpu) if servers
               else sum(o["cpu"] for o in outcomes))
        latencies = [latency for o in outcomes for latency in o["latencies"]]
        return Run(self.path, scenario, len(latencies), seconds, latencies, cpu, busy, total, [len(latencies) / seconds])

    def close(self) -> None:
        for commands in self.commands:
            commands.put(None)
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()


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
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000


# --- Report ---------------------------------------------------------------------------------------

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


def report(runs: list[Run], args, command: str, machine: str, load: str, gap_free: bool) -> str:
    names = {"hot": "1 (hot)", "spread": f"{SPREAD_CONVERSATIONS:,}"}
    lines = [
        f"## Durable write path: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `{command}` at {code_version()}",
        f"- Machine: {machine}",
        f"- Load average before the run: {load}",
        f"- {args.workers} concurrent workers on every path ({args.workers} processes; REST: {args.workers} "
        f"keep-alive HTTP clients over {args.daphnes} daphne processes). {args.rounds} rounds, each running "
        f"every path for {args.seconds:g} s per scenario (order rotated per round, after {WARMUP_SENDS} warm-up "
        f"sends per worker); every send a new client_msg_id; fan-out layer: "
        f"{'Redis' if args.redis_url else 'in-memory'}.",
        "- Parley CPU: CPU time of the processes running Parley (service workers; daphnes for REST; the "
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per path, scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--daphnes", type=int, default=None,
                        help="daphne processes for REST (default: one per worker, since each runs one sync view at a time)")
    parser.add_argument("--paths", default="service,rest,raw,raw+reads")
    parser.add_argument("--scenarios", default="hot,spread")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/parley_bench")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    args.daphnes = args.daphnes or args.workers
    args.paths = args.paths.split(",")
    args.scenarios = args.scenarios.split(",")
    command = " ".join(["python bench/write_path.py", *sys.argv[1:]])
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    ensure_database(args.database_url)
    django_setup(args.database_url, args.redis_url)
    fixture = build_fixture(args.workers)
    machine = machine_description()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    servers = (start_daphnes(args.daphnes, args.database_url, args.redis_url, RESULTS / f"daphne-{stamp}.log")
               if "rest" in args.paths else [])
    pools: dict[str, WorkerPool] = {}
    totals: dict[tuple[str, str], Run] = {}
    gap_free = True
    try:
        pools = {path: WorkerPool(path, fixture, args, servers) for path in args.paths}
        for round_ in range(args.rounds):
            order = args.paths[round_ % len(args.paths):] + args.paths[:round_ % len(args.paths)]
            for scenario in args.scenarios:
                conversations = [fixture.hot] if scenario == "hot" else fixture.spread
                for path in order:
                    result = pools[path].run(scenario, conversations, args.seconds)
                    gap_free = seqs_are_gap_free() and gap_free
                    print(f"round {round_ + 1} {path:>10} {scenario:>6}: {result.rate:8,.0f} sends/s  "
                          f"p50 {result.percentile(50):6.1f} ms", file=sys.stderr)
                    key = (path, scenario)
                    totals[key] = totals[key] + result if key in totals else result
    finally:
        for pool in pools.values():
            pool.close()
        stop_daphnes(servers)
    runs = [totals[(path, scenario)] for scenario in args.scenarios for path in args.paths]
    table = report(runs, args, command, machine, load, gap_free)
    (RESULTS / f"write_path-{stamp}.md").write_text(table)
    print(table)
    if not gap_free:
        sys.exit("seqs are not gap-free: the write path is broken")


if __name__ == "__main__":
    main()
