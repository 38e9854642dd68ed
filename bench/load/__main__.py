"""python -m bench.load --scenario steady|ramp|large|storm|chaos|degraded|all|gateway|large-channel --report DIR"""
from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import os
import shlex
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import gateway, largechannel, report  # noqa: E402
from bench.load.scenarios import ORDER, SCENARIOS  # noqa: E402
from bench.load.session import Session  # noqa: E402
from bench.load.stack import DB_NAME, Stack, loadavg, migrate, recreate_database  # noqa: E402

# Options whose default depends on the scenario (None on the command line: this table's value).
ISSUE7 = {"ack_ms": 100.0, "drain": 10.0, "gateways": 2, "systems": "", "straggler_wait": 0.0}
DEFAULTS = {"gateway": gateway.DEFAULTS, "large-channel": largechannel.DEFAULTS}


def git(*argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "") + "\n\n" + (sys.modules["bench.load"].__doc__ or ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="all",
                        help="steady, ramp, large, degraded, storm, chaos, all (those six), gateway, large-channel "
                             "(or a comma list)")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--database", default=DB_NAME, help="the benchmark database (dropped and recreated)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per steady phase")
    parser.add_argument("--drain", type=float, default=None,
                        help="seconds to wait for a phase's deliveries (10; gateway 5; large-channel 15)")
    parser.add_argument("--ack-ms", type=float, default=None,
                        help="clients coalesce acks over this many ms (100, as the reference and browser clients), "
                             "ack after every frame that brought messages (0), or never (-1); default 100")
    parser.add_argument("--systems", default=None,
                        help=f"gateway: {gateway.SYSTEMS}; large-channel: relay,buffered[:window_ms],direct"
                             "[,buffered-noack,direct-noack]")
    parser.add_argument("--gateways", type=int, default=None, choices=(1, 2),
                        help="gateway processes (and relay daphnes) per system: gateway 1, large-channel 2")
    parser.add_argument("--straggler-wait", type=float, default=None,
                        help="gateway and large-channel: after the last step, seconds to wait for late deliveries "
                             "before counting them missing (15; 10)")
    parser.add_argument("--degraded-rate", type=float, default=20.0, help="messages/s of the degraded scenario")
    parser.add_argument("--chaos-rate", type=float, default=20.0, help="group messages/s of the chaos scenario")
    parser.add_argument("--typing-rate", type=float, default=2000.0, help="typing frames/s of the degraded scenario's flood")
    parser.add_argument("--degraded-floods", type=int, default=3,
                        help="typing floods in the degraded scenario (each client's time to be told, every flood)")
    parser.add_argument("--port-offset", type=int, default=0,
                        help="move every port of Procfile.stack (and the relay's) by this much, to run beside "
                             "another stack")
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile.stack")
    parser.add_argument("--env-file", type=Path, default=ROOT / "stack.env")
    parser.add_argument("--stack-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for every stack process (repeatable)")
    parser.add_argument("--via", choices=("direct", "balancer"), default="direct",
                        help="clients connect to the gateways in turn (as the reference client with a URL list) "
                             "or through the stack's balancer")
    parser.add_argument("--quick", action="store_true", help="small versions of each scenario (a smoke test)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record py-spy flame graphs (SVG) of the gateways during the measured phases of "
                             "gateway, large-channel and storm into DIR (needs py-spy in .venv)")
    parser.add_argument("--profile-rate", type=int, default=100, metavar="HZ",
                        help="py-spy's samples per second with --profile (a short phase, such as the storm's "
                             "few seconds, needs more than the default for a readable graph)")
    gateway.add_arguments(parser)
    largechannel.add_arguments(parser)
    args = parser.parse_args()
    names = ORDER if args.scenario == "all" else [s.strip() for s in args.scenario.split(",")]
    for name in names:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name}")
    command = "python -m bench.load " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    # The load generator holds every client (a thousand sockets in the storm) in this one
    # process: at Python's default thresholds its full collections paused all of them at once,
    # for Parley's clients and the relay's alike. The same treatment as gateway.heap's.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 20, 20)
    asyncio.run(run(args, names, command))


def scenario_args(args, name: str):
    """The options as one scenario sees them: None replaced by that scenario's default."""
    out = copy.copy(args)
    for key, value in DEFAULTS.get(name, ISSUE7).items():
        if getattr(out, key) is None:
            setattr(out, key, value)
    return out


async def run(args, names: list[str], command: str) -> None:
    overrides = {
        # Typing is throttled per socket in production (one per 2 s); the degraded scenario's
        # flood stands for many more typists than the run has sockets.
        "PARLEY_TYPING_THROTTLE_MS": "0",
        **dict(kv.split("=", 1) for kv in args.stack_env),
    }
    stack = Stack(procfile=args.procfile, env_file=args.env_file, port_offset=args.port_offset, overrides=overrides,
                  database=args.database)
    # This process: Django on the benchmark database and the stack's cache (it issues tickets).
    os.environ.update({k: v for k, v in stack.env.items() if k not in ("PROMETHEUS_MULTIPROC_DIR",)})
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatproject.settings"
    os.environ["PARLEY_MAX_MEMBERS_PER_REQUEST"] = "100000"  # cohorts are made in one call per conversation
    t_start = time.monotonic()
    print(f"stack from {stack.source} (ports {stack.ports}); logs in {stack.log_dir}; database {args.database}",
          flush=True)
    recreate_database(args.database)
    migrate(stack.env)
    import django

    django.setup()
    stack.start_all()
    stack.flush_redis()
    await asyncio.sleep(1)
    session = Session(stack, 0.0, args.via, profile_dir=args.profile, profile_rate=args.profile_rate)
    session.relay.start()
    print(f"stack and relay up in {time.monotonic() - t_start:.0f}s; load average {loadavg()}", flush=True)
    # The code under test is what the stack's processes loaded when they started (now), not what
    # HEAD says later: others commit to this tree while a run goes on.
    dirty = git("status", "--porcelain", "--", "messaging", "receipts", "chatproject", "notifications", "ops",
                "gateway", "api")
    commit = git("rev-parse", "--short", "HEAD")
    stack_started = datetime.now(timezone.utc).strftime("%H:%M:%S")
    try:
        for name in names:
            meta = {"started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    "commit": f"{commit} (the tree when the stack started, {stack_started} UTC)",
                    # porcelain lines are "XY path"; git() stripped the first line's leading blank
                    "dirty_note": (f" plus uncommitted changes in {', '.join(l[2:].strip() for l in dirty.splitlines())}"
                                   if dirty else ""),
                    "loadavg_start": loadavg(), "command": command, "cores": os.cpu_count()}
            print(f"== {name} (load average {meta['loadavg_start']})", flush=True)
            t0 = time.monotonic()
            for proc in stack.names:  # a scenario starts from a whole stack
                if not stack.alive(proc):
                    stack.start(proc)
            own = scenario_args(args, name)
            session.ack_ms = own.ack_ms
            try:
                result = await SCENARIOS[name](session, own)
            except Exception:  # noqa: BLE001 - report and go on with the next scenario
                traceback.print_exc()
                continue
            meta["loadavg_end"] = loadavg()
            meta["seconds"] = round(time.monotonic() - t0)
            report.write(result, meta, args.report)
            print(f"== {name} done in {meta['seconds']}s; report {args.report / (name + '.md')}", flush=True)
        report.index(args.report, "python -m bench.load --scenario all --report docs/benchmarks/")
    finally:
        session.relay.stop()
        stack.stop_all()
        for name in stack.procs:
            tail = stack.log_tail(name, 400)
            if "Traceback" in tail:
                print(f"--- {name} log tail:\n{tail}", flush=True)
    print(f"total {time.monotonic() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
