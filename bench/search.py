#!/usr/bin/env python
"""Search over a million stored messages (issue 13 item 2, "Measure"). A script, not a test.

Loads 1,000,000 messages with COPY into a benchmark database (dropped, recreated and migrated:
its name must contain "bench"), then times ``messaging.search.search_messages``, the whole use
case the REST endpoint runs (the page of ids through the GIN index, then the rows, their
``ts_headline`` highlights and payloads), for sets of queries by random users, and writes
p50/p95/p99 per set to ``docs/benchmarks/search.md`` (and ``search.json``), with the plan of
one query of each set.

The data: 400 users and 2,001 conversations. ``general`` holds 100,000 messages and every
user; the other 2,000 conversations hold 450 each, and each user is in 20 of them (so a user
searches about 109,000 messages of the million). Bodies are 4 to 24 words drawn from a
vocabulary of 6,000 made-up words with a Zipf-like skew (the most common word is in about
one message in five); 1% of the messages are deleted (blank body, as a delete leaves them).

Usage (from the repository root):

  .venv/bin/python -m bench.search [--database parley_bench_search] [--queries 200] [--reuse]

``--reuse`` keeps an already loaded database (no drop, no load) and only measures.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load.stack import database_url, migrate, recreate_database  # noqa: E402

REPORT_DIR = ROOT / "docs" / "benchmarks"
USERS = 400
GENERAL_MESSAGES = 100_000
CONVERSATIONS = 2_000
MESSAGES_PER_CONVERSATION = 450
CONVERSATIONS_PER_USER = 20
VOCABULARY = 6_000
DELETED_SHARE = 0.01
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "da", "zu", "ri", "mo", "fa", "gle", "tor",
             "ben", "sal", "quin", "dor", "vex", "lum", "pra", "sto"]


def vocabulary(rng: random.Random) -> list[str]:
    words: list[str] = []
    seen = set()
    while len(words) < VOCABULARY:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_weights(n: int, s: float = 1.0) -> list[float]:
    return [1 / (rank ** s) for rank in range(1, n + 1)]


def django_setup(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    os.environ["PARLEY_RATE_SEARCH"] = "1000000/s"
    import django

    django.setup()


def load(words: list[str], rng: random.Random) -> None:
    """Users, conversations, memberships and a million messages, by COPY; the GIN index is
    built after the load (as a restore would), then the tables are analyzed."""
    from django.db import connection

    weights = zipf_weights(len(words))
    cumulative = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO messaging_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined, display_name) SELECT '!', false, 'u' || n, '', '', '', false, true, now(), "
            "'User ' || n FROM generate_series(1, %s) AS n", [USERS])
        cursor.execute("SELECT id FROM messaging_user ORDER BY id")
        users = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "INSERT INTO messaging_conversation (kind, title, topic, public, is_default, last_seq, last_change, "
            "member_count, slow_mode_seconds, fanout_seq, created_at, last_activity_at) "
            "SELECT CASE WHEN n = 0 THEN 'channel' ELSE 'group' END, CASE WHEN n = 0 THEN 'general' ELSE 'group ' || n END, "
            "'', n = 0, n = 0, 0, 0, 0, 0, 0, now(), now() FROM generate_series(0, %s) AS n ORDER BY n", [CONVERSATIONS])
        cursor.execute("SELECT id FROM messaging_conversation ORDER BY id")
        conversations = [row[0] for row in cursor.fetchall()]
        general, groups = conversations[0], conversations[1:]
        members: dict[int, list[int]] = {general: list(users)}
        for user in users:
            for conversation in rng.sample(groups, CONVERSATIONS_PER_USER):
                members.setdefault(conversation, []).append(user)
        buffer = io.StringIO()
        for conversation, people in members.items():
            for user in people:
                buffer.write(f"{conversation}\t{user}\tmember\t2026-01-01 00:00:00+00\t0\t0\tall\t\\N\n")
        buffer.seek(0)
        with cursor.connection.cursor().copy(
                "COPY messaging_membership (conversation_id, user_id, role, joined_at, delivered_seq, read_seq, "
                "notify, muted_until) FROM STDIN") as copy:
            copy.write(buffer.read())

        cursor.execute("DROP INDEX message_search")
        plan = [(general, GENERAL_MESSAGES)] + [(c, MESSAGES_PER_CONVERSATION) for c in groups]
        started = time.monotonic()
        written = 0
        with cursor.connection.cursor().copy(
                "COPY messaging_message (conversation_id, seq, sender_id, client_msg_id, body, created_at, state, "
                "version, html, mention_ids, reactions, attachments) FROM STDIN") as copy:
            for conversation, count in plan:
                people = members.get(conversation) or users[:1]
                for seq in range(1, count + 1):
                    written += 1
                    sender = people[rng.randrange(len(people))]
                    if rng.random() < DELETED_SHARE:
                        body, state = "", "deleted"
                    else:
                        picked = rng.choices(words, cum_weights=cumulative, k=rng.randint(4, 24))
                        body, state = " ".join(picked).capitalize() + ".", "visible"
                    copy.write_row((conversation, seq, sender, f"b{written}", body,
                                    "2026-01-01 00:00:00+00", state, 0, "", "[]", "[]", "[]"))
        print(f"  {written:,} messages copied in {time.monotonic() - started:.0f} s", flush=True)
        for conversation, count in plan:
            cursor.execute("UPDATE messaging_conversation SET last_seq = %s, member_count = %s WHERE id = %s",
                           [count, len(members.get(conversation, [])), conversation])
        started = time.monotonic()
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute("CREATE INDEX message_search ON messaging_message USING gin (search_vector)")
        print(f"  GIN index built in {time.monotonic() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE messaging_message")
        cursor.execute("VACUUM ANALYZE messaging_membership")
        cursor.execute("VACUUM ANALYZE messaging_conversation")


def query_sets(words: list[str], rng: random.Random, n: int) -> dict[str, list[tuple[str, bool]]]:
    """name -> [(query text, in one conversation?)]."""
    common, medium, rare = words[:20], words[100:600], words[3000:]
    return {
        "common word": [(rng.choice(common), False) for _ in range(n)],
        "medium word": [(rng.choice(medium), False) for _ in range(n)],
        "rare word": [(rng.choice(rare), False) for _ in range(n)],
        "two words": [(f"{rng.choice(medium)} {rng.choice(common)}", False) for _ in range(n)],
        "phrase": [(f'"{rng.choice(common)} {rng.choice(common)}"', False) for _ in range(n)],
        "word -word": [(f"{rng.choice(medium)} -{rng.choice(common)}", False) for _ in range(n)],
        "common word, one conversation": [(rng.choice(common), True) for _ in range(n)],
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p * (len(ordered) - 1))))]


def measure(sets: dict[str, list[tuple[str, bool]]], rng: random.Random) -> dict[str, dict]:
    from django.db import connection

    from messaging.models import Membership, User
    from messaging.search import search_messages

    users = list(User.objects.order_by("pk"))
    memberships: dict[int, list[int]] = {}
    for user_id, conversation_id in Membership.objects.values_list("user_id", "conversation_id"):
        memberships.setdefault(user_id, []).append(conversation_id)
    for text, _ in list(sets.values())[0][:20]:  # warm the caches a little, as a running server is
        search_messages(user=users[0], query=text)
    results: dict[str, dict] = {}
    for name, queries in sets.items():
        timings, hits = [], []
        for text, scoped in queries:
            user = rng.choice(users)
            conversation = rng.choice(memberships[user.pk][1:]) if scoped else None
            started = time.perf_counter()
            page = search_messages(user=user, query=text, conversation_id=conversation)
            timings.append((time.perf_counter() - started) * 1000)
            hits.append(len(page.hits))
        text, scoped = queries[0]
        results[name] = {
            "queries": len(queries), "p50_ms": percentile(timings, .50), "p95_ms": percentile(timings, .95),
            "p99_ms": percentile(timings, .99), "max_ms": max(timings), "mean_results": statistics.mean(hits),
            "example": text,
        }
        print(f"  {name:32} p50 {results[name]['p50_ms']:6.1f}  p95 {results[name]['p95_ms']:6.1f}  "
              f"p99 {results[name]['p99_ms']:6.1f} ms", flush=True)
    # One plan per set: the id statement search_messages ran, explained.
    from django.test.utils import CaptureQueriesContext

    for name, queries in sets.items():
        text, scoped = queries[0]
        user = users[0]
        conversation = memberships[user.pk][1] if scoped else None
        with CaptureQueriesContext(connection) as captured:
            search_messages(user=user, query=text, conversation_id=conversation)
        (statement,) = [q["sql"] for q in captured.captured_queries if "search_vector @@" in q["sql"]]
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON) {statement}")
            results[name]["plan"] = "\n".join(row[0] for row in cursor.fetchall())
    return results


def write_report(results: dict[str, dict], machine: str, command: str, total_messages: int) -> None:
    all_p95 = max(r["p95_ms"] for r in results.values())
    lines = [
        "# Search over a million messages (issue 13)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}` on {machine}.",
        "",
        f"{total_messages:,} messages: `general` with {GENERAL_MESSAGES:,} and all {USERS} users, "
        f"{CONVERSATIONS:,} groups of {MESSAGES_PER_CONVERSATION} with each user in {CONVERSATIONS_PER_USER} of "
        f"them; bodies of 4-24 words from {VOCABULARY:,} made-up words with a Zipf-like skew; "
        f"{DELETED_SHARE:.0%} deleted. Each time is one call of `messaging.search.search_messages` by a random "
        "user, in process on a warm database: the page of ids through the GIN index (20 per page), then the "
        "rows, their `ts_headline` highlights and payloads. The machine is shared (2 cores, other work running), "
        "so the tails are noisy.",
        "",
        "| queries | n | p50 ms | p95 ms | p99 ms | max ms | results per page |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(f"| {name} (e.g. `{r['example']}`) | {r['queries']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['mean_results']:.1f} |")
    lines += [
        "",
        f"The goal was p95 under 100 ms; the worst set's p95 is **{all_p95:.1f} ms**.",
        "",
        "## Plans (EXPLAIN ANALYZE of the id query, one per set)",
        "",
    ]
    for name, r in results.items():
        lines += [f"### {name}: `{r['example']}`", "", "```", r["plan"], "```", ""]
    (REPORT_DIR / "search.md").write_text("\n".join(lines))
    (REPORT_DIR / "search.json").write_text(json.dumps(
        {"machine": machine, "messages": total_messages, "results": results}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="parley_bench_search")
    parser.add_argument("--queries", type=int, default=200, help="queries per set")
    parser.add_argument("--reuse", action="store_true", help="measure an already loaded database")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    url = database_url(args.database)
    rng = random.Random(args.seed)
    words = vocabulary(rng)
    if not args.reuse:
        print(f"recreating {args.database} and migrating", flush=True)
        recreate_database(args.database)
        migrate({**os.environ, "DATABASE_URL": url, "REDIS_URL": ""})
    django_setup(url)
    if not args.reuse:
        print("loading", flush=True)
        load(words, rng)
    from django.db import connection

    from bench.load.write_path_report import machine_description
    from messaging.models import Message

    total = Message.objects.count()
    print(f"measuring over {total:,} messages", flush=True)
    results = measure(query_sets(words, random.Random(args.seed + 1), args.queries), random.Random(args.seed + 2))
    connection.close()
    write_report(results, machine_description(), "python -m bench.search " + " ".join(sys.argv[1:]), total)
    print(f"wrote {REPORT_DIR / 'search.md'}")


if __name__ == "__main__":
    main()
