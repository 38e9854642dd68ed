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

  .venv/bin/python -m bench.load.write_path [--seconds 4] [--rounds 3] [--workers 4] [--daphnes N]
      [--paths service,rest,raw,raw+reads] [--scenarios hot,spread] [--database parley_bench] [--redis-url URL]

A separate entry point, not a scenario of ``python -m bench.load``: it measures worker
processes calling the write path back to back, with no stack, sockets or fan-out consumer.
It shares bench/load's database recreation (the database is dropped, recreated and
migrated: its name must contain "bench"), process runner (the REST path's gateways, on free
ports) and percentile function. Without --redis-url the fan-out after commit publishes to
the in-memory channel layer. The result table goes to stdout and to
bench/results/write_path-<UTC time>.md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load.write_path_report import Run, machine_description, report  # noqa: E402
from bench.load.stack import (  # noqa: E402
    Processes, database_url, free_port, http_ok, migrate, recreate_database,
)

RESULTS = ROOT / "bench" / "results"
SPREAD_CONVERSATIONS = 1000
WARMUP_SENDS = 5
UNLIMITED = "1000000/s"
BODY = "The durable write path: one seq, one row, one commit. " * 2

# The raw transaction: what allocate_seq and do_send_message do, as SQL.
RAW_TAKE_SEQ = ("UPDATE messaging_conversation SET last_seq = last_seq + 1, last_activity_at = now() "
                "WHERE id = %s RETURNING last_seq")
# Every column the service writes (html is the service's rendering of BODY, given as is here).
RAW_INSERT = ("INSERT INTO messaging_message (conversation_id, seq, sender_id, client_msg_id, body, created_at, state, "
              "html, mention_ids, reactions, attachments, version) "
              "VALUES (%s, %s, %s, %s, %s, now(), 'visible', %s, '[]', '[]', '[]', 0) RETURNING id")
RAW_HTML = f"<p>{BODY.strip()}</p>"
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
    import django

    django.setup()


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
    from django.db import connections
    from rest_framework.authtoken.models import Token

    from messaging.models import Conversation, Membership, User

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


# --- Gateways for the REST path ------------------------------------------------------------------

def start_gateways(count: int, log_dir: Path) -> tuple[Processes, list[int]]:
    """``count`` gateways (parley-gateway) on free ports, on this process's environment
    (django_setup chose the database and the channel layer)."""
    servers = Processes(env={
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Database connections come from each process's pool, as in production.
        "PARLEY_RATE_SEND": UNLIMITED,
        "DJANGO_LOG_LEVEL": "WARNING",
    }, log_dir=log_dir)
    ports = []
    for i in range(count):
        port = free_port()
        # -v 0: no access log line per request (it is not the write path).
        servers.add(f"gateway{i}", f"exec .venv/bin/parley-gateway -v 0 -b 127.0.0.1 -p {port} "
                    "chatproject.asgi:application", ready=lambda port=port: http_ok(f"http://127.0.0.1:{port}/healthz"))
        ports.append(port)
    for name in servers.commands:
        servers.start(name, wait=False)
    for name in servers.commands:
        servers.wait_ready(name)
    return servers, ports


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
            db.execute(RAW_INSERT, [conversation_id, seq, sender, key, BODY, RAW_HTML]).fetchone()
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

    def __init__(self, path: str, fixture: Fixture, args, servers: Processes | None, ports: list[int]) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no connection crosses a fork
        self.path, self.servers = path, servers
        self.ready, self.results = ctx.Barrier(args.workers + 1), ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(args.workers)]
        self.processes = []
        for i, commands in enumerate(self.commands):
            sender = fixture.senders[i]
            spec = {"sender": sender, "database_url": database_url(args.database), "redis_url": args.redis_url}
            if path.startswith("raw"):
                spec["memberships"] = {c: m for (c, u), m in fixture.memberships.items() if u == sender}
            if path == "rest":
                spec.update(token=fixture.tokens[i], port=ports[i % len(ports)])
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
        servers = list(self.servers.commands) if self.servers is not None and self.path == "rest" else []
        server_cpu = [self.servers.cpu(name) for name in servers]
        busy, total = machine_cpu()
        outcomes = [self.results.get(timeout=seconds + 300) for _ in self.commands]
        busy, total = machine_cpu()[0] - busy, machine_cpu()[1] - total
        errors = [o["error"] for o in outcomes if o["error"]]
        if errors:
            raise RuntimeError(f"{self.path}/{scenario} failed: {errors[0]}")
        cpu = (sum(self.servers.cpu(name) for name in servers) - sum(server_cpu) if servers
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per path, scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--daphnes", type=int, default=None,
                        help="daphne processes for REST (default: one per worker, since each runs one sync view at a time)")
    parser.add_argument("--paths", default="service,rest,raw,raw+reads")
    parser.add_argument("--scenarios", default="hot,spread")
    parser.add_argument("--database", default="parley_bench", help="dropped, recreated and migrated")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    args.daphnes = args.daphnes or args.workers
    args.paths = args.paths.split(",")
    args.scenarios = args.scenarios.split(",")
    command = " ".join(["python -m bench.load.write_path", *sys.argv[1:]])
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    recreate_database(args.database)
    migrate({**os.environ, "DATABASE_URL": database_url(args.database)})
    django_setup(database_url(args.database), args.redis_url)
    fixture = build_fixture(args.workers)
    machine = machine_description()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    servers, ports = (start_gateways(args.daphnes, RESULTS / f"gateways-{stamp}") if "rest" in args.paths
                      else (None, []))
    pools: dict[str, WorkerPool] = {}
    totals: dict[tuple[str, str], Run] = {}
    gap_free = True
    try:
        pools = {path: WorkerPool(path, fixture, args, servers, ports) for path in args.paths}
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
        if servers is not None:
            servers.stop_all()
    runs = [totals[(path, scenario)] for scenario in args.scenarios for path in args.paths]
    table = report(runs, args, command, machine, load, gap_free, SPREAD_CONVERSATIONS, WARMUP_SENDS)
    (RESULTS / f"write_path-{stamp}.md").write_text(table)
    print(table)
    if not gap_free:
        sys.exit("seqs are not gap-free: the write path is broken")


if __name__ == "__main__":
    main()
