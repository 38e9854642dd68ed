"""Where one service send spends its time: CPU and wall per stage of do_send_message.

A companion to bench/load/write_path.py: one process, no concurrency, sequential new sends
into a two-member conversation. Each stage is timed by wrapping the function that does it;
"rest" is what the send did outside them (validation, savepoint bookkeeping, building the
payload, scheduling the fan-out). A separate entry point: it profiles one call in this
process, with no stack; its database is recreated by bench/load's shared function.

Usage (from the repository root):

  .venv/bin/python -m bench.load.send_profile [--sends 500] [--database parley_bench] [--redis-url URL]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load.stack import database_url, migrate, recreate_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=500)
    parser.add_argument("--database", default="parley_bench", help="dropped, recreated and migrated")
    parser.add_argument("--redis-url", default=None,
                        help="the cache and channel layer on this Redis (as deployed); default: local memory")
    args = parser.parse_args()
    recreate_database(args.database)
    os.environ["DATABASE_URL"] = database_url(args.database)
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("CHANNEL_REDIS_URLS", None)
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatproject.settings"
    os.environ["PARLEY_RATE_SEND"] = "1000000/s"  # counted, never refused
    migrate(dict(os.environ))
    import django

    django.setup()
    from django.db import connections

    from messaging import layer, ratelimit, send
    from messaging.conversations import do_create_group
    from messaging.models import User

    cpu, wall = defaultdict(float), defaultdict(float)

    def timed(stage: str, function):
        def wrapper(*a, **kw):
            c, w = time.process_time(), time.perf_counter()
            try:
                return function(*a, **kw)
            finally:
                cpu[stage] += time.process_time() - c
                wall[stage] += time.perf_counter() - w
        return wrapper

    tag = uuid.uuid4().hex[:8]
    alice, bob = User.objects.bulk_create([User(username=f"profile-{tag}-a"), User(username=f"profile-{tag}-b")])
    conversation = do_create_group(creator=alice, title="profile", member_ids=[bob.pk]).conversation
    for n in range(20):  # warm up
        send.do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id=f"warm-{n}", body="hi")

    stages = [
        ("authorize + idempotency lookup (1 SELECT)", send, "_access_send_target"),
        ("store: seq, INSERT, sender's watermarks (one statement on PostgreSQL; a plain send's commit in it)",
         send, "_store"),
        ("send rate limit (cache counter)", ratelimit, "enforce"),
        ("COMMIT (only a send that needs a transaction block: uploads, mentions)", connections["default"], "commit"),
        ("fan-out publish after commit (messaging.layer.publish)", layer, "publish"),
    ]
    originals = [(owner, name, getattr(owner, name)) for _, owner, name in stages]
    for stage, owner, name in stages:
        setattr(owner, name, timed(stage, getattr(owner, name)))
    do_send = timed("total", send.do_send_message)
    for n in range(args.sends):
        do_send(sender=alice, conversation_id=conversation.pk, client_msg_id=f"profile-{n}", body="hello there")
    for owner, name, original in originals:
        setattr(owner, name, original)

    rows = [stage for stage, _, _ in stages]
    cpu["rest"] = cpu["total"] - sum(cpu[s] for s in rows)
    wall["rest"] = wall["total"] - sum(wall[s] for s in rows)
    per = 1000 / args.sends
    print(f"do_send_message, {args.sends} sequential new sends, 2-member conversation, one process\n")
    print("| stage | CPU ms/send | wall ms/send |\n|---|---:|---:|")
    for stage in rows + ["rest", "total"]:
        print(f"| {stage} | {cpu[stage] * per:.2f} | {wall[stage] * per:.2f} |")


if __name__ == "__main__":
    main()
