#!/usr/bin/env python
"""Where one service send spends its time: CPU and wall per stage of do_send_message.

A companion to bench/write_path.py: one process, no concurrency, sequential new sends into a
two-member conversation. Each stage is timed by wrapping the function that does it; "rest"
is what the send did outside them (validation, savepoint bookkeeping, building the payload,
scheduling the fan-out).

Usage (from the repository root):

  .venv/bin/python bench/send_profile.py [--sends 500]
      [--database-url postgres://postgres@127.0.0.1:5432/parley_bench]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=500)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/parley_bench")
    args = parser.parse_args()
    if "bench" not in urllib.parse.urlparse(args.database_url).path:
        sys.exit("use a bench database (its name contains 'bench'): this script writes to it")
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatproject.settings"
    os.environ["PARLEY_RATE_SEND"] = "1000000/s"  # counted, never refused
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections
    from django.db.models.query import QuerySet

    from messaging import actions, fanout
    from messaging.models import Message, User

    call_command("migrate", verbosity=0, interactive=False)
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
    conversation = actions.do_create_group(creator=alice, title="profile", member_ids=[bob.pk]).conversation
    for n in range(20):  # warm up
        actions.do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id=f"warm-{n}", body="hi")

    stages = [
        ("authorize + idempotency lookup (1 SELECT)", actions, "_access_membership_for_send"),
        ("allocate_seq (UPDATE ... RETURNING)", actions, "allocate_seq"),
        ("INSERT message (ORM create)", Message.objects, "create"),
        ("UPDATE sender's watermarks (ORM update)", QuerySet, "update"),
        ("COMMIT", connections["default"], "commit"),
        ("fan-out publish after commit (async_to_sync group_send)", fanout, "_publish"),
    ]
    try:
        from messaging import ratelimit
    except ImportError:  # an older tree without the send limit
        pass
    else:
        stages.insert(2, ("send rate limit (cache counter)", ratelimit, "enforce"))
    originals = [(owner, name, getattr(owner, name)) for _, owner, name in stages]
    for stage, owner, name in stages:
        setattr(owner, name, timed(stage, getattr(owner, name)))
    send = timed("total", actions.do_send_message)
    for n in range(args.sends):
        send(sender=alice, conversation_id=conversation.pk, client_msg_id=f"profile-{n}", body="hello there")
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
