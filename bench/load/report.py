"""Markdown reports with PNG latency plots under docs/benchmarks/, and the index (README.md)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.load import metrics  # noqa: E402

COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]


def _timeline(ax, series: dict[str, list], title: str) -> None:
    t_min = min((pts[0][0] for pts in series.values() if pts), default=0.0)
    for i, (label, pts) in enumerate(series.items()):
        if not pts:
            continue
        xs = [t - t_min for t, _ in pts]
        ys = [max(0.1, lat) for _, lat in pts]
        ax.scatter(xs, ys, s=2, alpha=0.4, color=COLORS[i % len(COLORS)], label=label, rasterized=True)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the first delivery")
    ax.set_ylabel("send-to-deliver, ms (log)")
    ax.set_title(title)
    ax.axhline(250, color="red", lw=0.8, ls="--")
    ax.axhline(50, color="green", lw=0.8, ls=":")
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(markerscale=5, fontsize=7, loc="upper left")


def _cdf(ax, named: dict[str, list[float]], xlabel: str, title: str, log: bool = True) -> None:
    for i, (label, values) in enumerate(named.items()):
        values = sorted(v for v in values if v is not None)
        if not values:
            continue
        ys = [(k + 1) / len(values) for k in range(len(values))]
        ax.plot([max(0.1, v) for v in values], ys, color=COLORS[i % len(COLORS)], label=label)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction")
    ax.axhline(0.95, color="gray", lw=0.8, ls=":")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def plot(result: dict[str, Any], path: Path) -> None:
    name = result["scenario"]
    series = result.get("series", {})
    if name == "storm":
        fig, ax = plt.subplots(1, 1, figsize=(8, 4.5))
        _cdf(ax, {"parley: ready frame": series.get("parley_ready", []),
                  "parley: all 50 missed messages held": series.get("parley_caught_up", []),
                  "relay: socket open again (nothing replayed)": series.get("relay_connected", [])},
             "ms after all sockets were told to come back", "Reconnect storm: time to ready")
    else:
        fig, axes = plt.subplots(1, 3 if name == "ramp" else 2, figsize=(15 if name == "ramp" else 12, 4.5))
        _timeline(axes[0], series.get("parley", {}), f"Parley ({name})")
        _timeline(axes[1], series.get("relay", {}), f"Channels-tutorial relay ({name})")
        lo = min(a.get_ylim()[0] for a in axes[:2])
        hi = max(a.get_ylim()[1] for a in axes[:2])
        for a in axes[:2]:
            a.set_ylim(lo, hi)
        if name == "ramp":
            ax = axes[2]
            for label, rows, c in (("parley", result["parley"], "tab:blue"), ("relay", result["relay"], "tab:orange")):
                xs = [r["offered_deliveries_per_s"] for r in rows]
                ax.plot(xs, [r["p95_ms"] for r in rows], "o-", color=c, label=f"{label} p95")
                ax.plot(xs, [r["p50_ms"] for r in rows], "x--", color=c, label=f"{label} p50")
            ax.set_yscale("log")
            ax.axhline(250, color="red", lw=0.8, ls="--")
            ax.set_xlabel("offered deliveries/s")
            ax.set_ylabel("ms (log)")
            ax.set_title("Ramp: latency by offered rate")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _rows_table(rows: list[dict[str, Any]], system: str) -> list[str]:
    out = []
    for r in rows:
        cpu = ", ".join(f"{k} {v}%" for k, v in r.get("cpu_percent", {}).items())
        ok = {True: "yes", False: "no"}.get(r.get("sustained"), "")
        out.append(f"| {system} | {r['phase']} | {r['offered_msgs_per_s']} | {r.get('offered_deliveries_per_s', '')} | "
                   f"{r['deliveries_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} | "
                   f"{r['missing_after_drain']} | {r['generator_lag_max_ms']} | {cpu} | {ok} |")
    return out


HEADER = ["| system | phase | offered msg/s | offered deliv/s | got deliv/s | p50 ms | p95 ms | p99 ms | max ms | "
          "missing after drain | generator lag ms | CPU (of 200%) | sustained |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]


def _check_lines(check: dict[str, Any]) -> list[str]:
    return [f"Per-device check against the database (every device must hold seq base+1..last_seq of each of its "
            f"conversations exactly once, in order): **{'passed' if check['exactly_once_in_order'] else 'FAILED'}** - "
            f"{check['devices']} devices, {check['expected_deliveries']} deliveries expected, lost {check['lost']} "
            f"({check['devices_short']} devices short), duplicates {check['duplicates']}, "
            f"reordered/gaps {check['reordered_or_gaps']}, unconfirmed sends {check['unconfirmed_sends']}, "
            f"connections {check['connections']}, connect failures {check['connect_failures']} "
            f"(waited {check['waited_s']} s at the end)."]


def _level_sample(entry: list) -> str:
    """(t, level, ratio[, device share]) of the degraded scenario's once-a-second scrape."""
    t, level, *gauges = entry
    return "(" + ", ".join([str(t), str(level)] + [str(None if g is None else round(g, 3)) for g in gauges]) + ")"


def markdown(result: dict[str, Any], meta: dict[str, Any], png: str) -> str:
    name = result["scenario"]
    lines = [f"# Load benchmark: {name}", "",
             f"Run {meta['started']} UTC, commit {meta['commit']}{meta['dirty_note']}, load average at start "
             f"{meta['loadavg_start']}, at end {meta.get('loadavg_end', '?')}. Command: `{meta['command']}`.", "",
             f"![latency plot]({png})", ""]
    if name in ("steady", "ramp", "large", "degraded", "chaos"):
        lines += HEADER + _rows_table(result["parley"], "parley") + _rows_table(result["relay"], "relay") + [""]
    if name == "storm":
        p, r = result["parley"], result["relay"]
        lines += ["| system | clients | missed each | ready p50 s | p95 s | p99 s | max s | caught up p95 s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|",
                  f"| parley | {p['clients']} | {p['missed_each']} | {p['time_to_ready']['p50_s']} | "
                  f"{p['time_to_ready']['p95_s']} | {p['time_to_ready']['p99_s']} | {p['time_to_ready']['max_s']} | "
                  f"{p['time_to_caught_up']['p95_s']} |",
                  f"| relay | {r['clients']} | (lost) | {r['time_to_connected']['p50_s']} | "
                  f"{r['time_to_connected']['p95_s']} | {r['time_to_connected']['p99_s']} | "
                  f"{r['time_to_connected']['max_s']} | never (no replay) |", "",
                  f"Parley: {p['time_to_ready']['n']} of {p['clients']} ready, {p['time_to_caught_up']['n']} caught up; "
                  f"CPU during the storm {p['cpu_percent']}; degraded frames seen: {p['degraded_frames'] or 'none'}.",
                  ""]
    if "check" in result:
        lines += _check_lines(result["check"]) + [""]
    if name == "chaos":
        lines += ["Faults (seconds after the load began): " + "; ".join(f"{t}s {w}" for t, w in result["events"]),
                  f"Reconnections by clients: {result['reconnects']}.",
                  "Relay faults: " + "; ".join(f"{t}s {w}" for t, w in result["relay_events"]) + "; relay "
                  f"duplicates/reordered {result['relay_info']}.", ""]
    if name == "degraded":
        lines += ["Timeline: " + "; ".join(f"{t}s {w}" for t, w in result["marks"]), ""]
        if "floods" in result:
            slow = result["slow_devices"]
            lines += [f"One device in eight stops acking ({slow['silent']} of {slow['devices']}, {slow['seconds']} s, "
                      f"no flood): clients told of degraded mode: {slow['told']}; hot signals meanwhile: "
                      f"{', '.join(slow['hot_signals']) or 'none'}.", ""]
            everyday = result.get("everyday_typing")
            if everyday:
                lines += [f"Everyday typing ({everyday['rate']:.0f} typing frames/s, every device every 2 s, "
                          f"{everyday['seconds']} s, no flood): clients told of degraded mode: {everyday['told']}; "
                          f"hot signals meanwhile: {', '.join(everyday['hot_signals']) or 'none'}.", ""]
            lines += ["| flood | clients told | p50 s | max s | within 3 s | hot signals |",
                      "|---:|---:|---:|---:|---:|---|"]
            lines += [f"| {i + 1} | {f['told']}/{f['devices']} | {f['p50_s']} | {f['max_s']} | {f['within_3s']} | "
                      f"{'not run: still degraded' if f.get('not_run') else ', '.join(f.get('hot_signals', []))} |"
                      for i, f in enumerate(result["floods"])] + [""]
            lines += ["Hot signals of the shared state as they changed (t, signals): "
                      + ", ".join(f"({t}, {'+'.join(r) or '-'})" for t, r in result.get("hot_signals", [])), ""]
        lines += [f"Typing frames received by clients: {result['typing_frames_received']}. Degraded level, "
                  f"ack-timeout ratio (messages) and device share from /metrics, once a second (t, level, ratio, share): "
                  + ", ".join(_level_sample(entry) for entry in result["levels"][::3]), ""]
    stage_rows = [r for r in result.get("parley", []) if isinstance(r, dict) and r.get("stages")]
    if name == "storm":
        stage_rows = [{"phase": "storm", "stages": result["parley"]["stages"]}]
    for r in stage_rows:
        lines += [f"Stage breakdown from /metrics during `{r['phase']}` (summed over every gateway and worker; "
                  f"quantiles interpolated in the histogram buckets):", ""] + metrics.stage_table(r["stages"])
        extra = {k: v for k, v in r["stages"].items() if k not in ("stages", "send_to_deliver")}
        lines += ["", f"Other counters: {extra}", ""]
    lines += result.get("tables", [])  # the issue-3 and issue-4 scenarios render their own
    for note in result.get("notes", []):
        lines += [note, ""]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], meta: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    name = result["scenario"]
    png = f"{name}.png"
    plot(result, out / png)
    (out / f"{name}.md").write_text(markdown(result, meta, png))
    slim = {k: v for k, v in result.items() if k != "series"}
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "result": slim}, indent=1, default=str))


# --- the goals -----------------------------------------------------------------------------------

def _row(rows: list[dict], phase: str) -> dict | None:
    return next((r for r in rows if r["phase"] == phase), None)


def goals(results: dict[str, dict]) -> list[tuple[str, str, str]]:
    out = []
    s = results.get("steady")
    if s:
        r, rl = _row(s["parley"], "steady-5k"), _row(s["relay"], "relay-steady-5k")
        if r:
            met = r["p95_ms"] < 250 and r["deliveries_per_s"] >= 4750 and s["check"]["lost"] == 0 and r["missing_after_drain"] == 0
            out.append(("20 groups x 10: 5,000 deliveries/s (500 msg/s) at p95 < 250 ms, zero loss",
                        f"{r['deliveries_per_s']} deliveries/s, p95 {r['p95_ms']} ms, missing after drain "
                        f"{r['missing_after_drain']}, lost at the end {s['check']['lost']}"
                        + (f" (relay: {rl['deliveries_per_s']}/s, p95 {rl['p95_ms']} ms)" if rl else ""),
                        "met" if met else "missed"))
        r, rl = _row(s["parley"], "steady-1k"), _row(s["relay"], "relay-steady-1k")
        if r:
            out.append(("20 groups x 10: p95 <= 50 ms at 1,000 deliveries/s",
                        f"p95 {r['p95_ms']} ms at {r['deliveries_per_s']} deliveries/s"
                        + (f" (relay p95 {rl['p95_ms']} ms)" if rl else ""),
                        "met" if r["p95_ms"] <= 50 and r["missing_after_drain"] == 0 else "missed"))
    ramp = results.get("ramp")
    if ramp:
        ok = [r for r in ramp["parley"] if r["sustained"]]
        okr = [r for r in ramp["relay"] if r["sustained"]]
        out.append(("Ramp: highest sustained rate (p95 < 250 ms, nothing missing, >= 95% of offer)",
                    f"parley {max((r['deliveries_per_s'] for r in ok), default=0)} deliveries/s, relay "
                    f"{max((r['deliveries_per_s'] for r in okr), default=0)}", "info"))
    lg = results.get("large")
    if lg:
        r = lg["parley"][0]
        rl = lg["relay"][0] if lg["relay"] else None
        met = r["p95_ms"] < 500 and lg["check"]["lost"] == 0 and r["missing_after_drain"] == 0
        out.append((f"{lg['members']}-member channel: 20 msg/s at p95 < 500 ms, zero loss",
                    f"p95 {r['p95_ms']} ms, {r['deliveries_per_s']} deliveries/s, lost {lg['check']['lost']}"
                    + (f" (relay p95 {rl['p95_ms']} ms, missing {rl['missing_after_drain']})" if rl else ""),
                    "met" if met else "missed"))
    st = results.get("storm")
    if st:
        p = st["parley"]
        p95 = p["time_to_caught_up"]["p95_s"]
        met = p["time_to_caught_up"]["n"] == p["clients"] and p95 < 3 and st["check"]["lost"] == 0
        out.append((f"Reconnect storm, {p['clients']} clients x {p['missed_each']} missed: p95 time-to-ready < 3 s "
                    "(issue 15; issue 7 asked < 5 s)",
                    f"ready p95 {p['time_to_ready']['p95_s']} s, all missed messages held p95 {p95} s "
                    f"({p['time_to_caught_up']['n']}/{p['clients']}); relay reconnect p95 "
                    f"{st['relay']['time_to_connected']['p95_s']} s with nothing replayed", "met" if met else "missed"))
    dg = results.get("degraded")
    if dg:
        base = _row(dg["parley"], "unloaded")
        shed = _row(dg["parley"], "flood-shed")
        pre = _row(dg["parley"], "flood-before-shed")
        first = _row(dg["parley"], "flood-shed-first-5s")
        if base and shed:
            ratio = shed["p95_ms"] / base["p95_ms"] if base["p95_ms"] else float("inf")
            met = ratio <= 2 and dg["recovered"] and dg["check"]["lost"] == 0
            out.append(("Degraded mode: message p95 while typing is shed <= 2x unloaded, recovers by itself",
                        f"unloaded p95 {base['p95_ms']} ms, flood before shedding p95 {pre['p95_ms'] if pre else '-'} ms, "
                        + (f"first 5 s of shedding p95 {first['p95_ms']} ms, " if first else "")
                        + f"while shed p95 {shed['p95_ms']} ms ({ratio:.1f}x); ended by itself: "
                        f"{'yes' if dg['recovered'] else 'no'}", "met" if met else "missed"))
        else:
            out.append(("Degraded mode: message p95 while typing is shed <= 2x unloaded, recovers by itself",
                        "degraded mode did not engage under the flood", "missed"))
        if "floods" in dg:
            floods, slow = dg["floods"], dg["slow_devices"]
            met = all(f["within_3s"] == f["devices"] and not f.get("not_run") for f in floods)
            out.append(("Degraded mode: every client told within 3 s of a flood's start, every flood",
                        "; ".join(f"flood {i + 1}: {f['within_3s']}/{f['devices']} within 3 s (max {f['max_s']} s)"
                                  for i, f in enumerate(floods)), "met" if met else "missed"))
            out.append(("Degraded mode: never entered because one device in eight stops acking",
                        f"{slow['silent']} of {slow['devices']} devices silent for {slow['seconds']} s: "
                        f"{slow['told']} clients told; hot signals meanwhile: {', '.join(slow['hot_signals']) or 'none'}",
                        "met" if not slow["on_ack_timeouts"] else "missed"))
            everyday = dg.get("everyday_typing")
            if everyday:
                out.append(("Degraded mode: never entered because every device types as often as the throttle allows",
                            f"{everyday['rate']:.0f} typing frames/s for {everyday['seconds']} s: {everyday['told']} "
                            f"clients told; hot signals meanwhile: {', '.join(everyday['hot_signals']) or 'none'}",
                            "met" if not everyday["told"] and not everyday["hot_signals"] else "missed"))
    ch = results.get("chaos")
    if ch:
        c = ch["check"]
        rl = ch["relay"][0]
        out.append(("Chaos (SIGKILL gateway1, restart redis2, kill the worker): every device seq 1..N exactly once, in order",
                    f"{c['devices']} devices, {c['expected_deliveries']} deliveries: lost {c['lost']}, duplicates "
                    f"{c['duplicates']}, gaps {c['reordered_or_gaps']} (relay under a daphne kill and a Redis restart: "
                    f"{rl['missing_after_drain']} of {rl['expected']} deliveries lost)",
                    "met" if c["exactly_once_in_order"] else "missed"))
    return out


def index(out: Path, command: str, extra: list[str] | None = None) -> None:
    results, metas = {}, {}
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        if "result" in data and "scenario" in data["result"]:
            results[data["result"]["scenario"]] = data["result"]
            metas[data["result"]["scenario"]] = data["meta"]
    lines = ["# Load benchmarks (issue 7)", "",
             "`bench/load` drives the production-like stack (`Procfile.stack`: two daphne gateways, "
             "HAProxy, a Celery worker and beat, PostgreSQL, the channel layer on two Redis servers; "
             "clients use the gateways' URL list by default, see analysis.md on the balancer) "
             "with many lean protocol clients in one separate process, and runs the Channels-tutorial relay "
             "(`bench/relay`, two daphne processes on the same Redis) through the same load in the same session.",
             "", "```sh", command, "```", "",
             "| scenario | report | run (UTC) | load average at start | at end |", "|---|---|---|---|---|"]
    order = ["steady", "ramp", "large", "degraded", "storm", "chaos", "gateway", "large-channel"]
    metas = dict(sorted(metas.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    for name, meta in metas.items():
        lines.append(f"| {name} | [{name}.md]({name}.md) | {meta['started']} | {meta['loadavg_start']} | "
                     f"{meta.get('loadavg_end', '?')} |")
    lines += ["", "## Goals (2-core machine)", "", "| goal | measured | verdict |", "|---|---|---|"]
    for goal, measured, verdict in goals(results):
        lines.append(f"| {goal} | {measured} | **{verdict}** |")
    lines += [""] + (extra or []) + METHOD
    if (out / "analysis.md").exists():
        lines += ["", "Where the time goes, what was missed and by how much, and the defects found in the stack: "
                  "[analysis.md](analysis.md)."]
    (out / "README.md").write_text("\n".join(lines) + "\n")


METHOD = """
## How it is measured

- **Stack**: `bench/load/stack.py` parses `Procfile.stack` with honcho's parser and runs each line as
  `sh -c <line>` in its own process group, with `stack.env` plus overrides: `DATABASE_URL` = `--database`
  (default `parley_bench7`; dropped, recreated and migrated at the start of every invocation), every `PARLEY_RATE_*` lifted to
  `1000000/s`, `PARLEY_TYPING_THROTTLE_MS=0` (so the degraded scenario's flood reaches the fan-out), a fresh
  private `PROMETHEUS_MULTIPROC_DIR`, `DJANGO_LOG_LEVEL=WARNING`. `--port-offset N` moves every port of the
  file (to run beside someone else's stack); `--stack-env KEY=VALUE` adds settings.
- **Clients**: one separate asyncio process (`bench/load/clients.py`) holding every device: ticket (issued
  straight into the shared cache), `hello` with cursors, `replay` while `has_more`, a cumulative `ack`
  after every frame that brought messages (as the reference and browser clients), dedupe by seq, reconnect
  with backoff and jitter or after a `reconnect` hint, sends retried with the same `client_msg_id` until
  `send.ok`. By default (`--via direct`) devices alternate between the two gateways and rotate to the next
  on failure, as the reference client does with a URL list; `--via balancer` goes through the stack's
  balancer (see analysis.md for why that is not the default).
- **Deliveries** count every member device, the sender's own included (10 per message in a group of 10, so
  5,000 deliveries/s = 500 stored messages/s). **Latency** (send-to-deliver) is measured on the other
  members' devices only: from the sender's `time.time()` at its first send (carried in the body) to the
  frame being parsed, one clock, one process. **Missing after drain**: not yet delivered when the phase's
  drain ended (late, not necessarily lost); **lost**: what the per-device check at the end of the scenario
  finds missing against the database's `last_seq` (every device must hold seq base+1..N of each
  conversation, exactly once, in order; a duplicate or a jump on a connection is counted too). A step is
  **sustained** when p95 < 250 ms, nothing is missing after the drain, no send failed and deliveries/s
  reach 95% of the offer.
- **Stage breakdown**: `parley_stage_seconds` and `parley_send_to_deliver_seconds` from `/metrics` on one
  gateway (the multiprocess directory sums every gateway and worker), scraped before and after each phase;
  quantiles are interpolated inside the buckets, and the stage buckets end at 5 s, so **5000.0 means
  "5 s or more"**.
- **Relay baseline**: the Channels tutorial's relay (`bench/relay`, two daphne processes on the stack's
  `redis2`, db 2), one room per conversation, run through the same schedule right after Parley in the same
  session, with the same client process. It stores nothing, has no auth, no seq, no replay and no acks.
- **CPU**: per process group from `/proc` (the worker's pool included), PostgreSQL backends of the
  benchmark database, the load generator; `others` is the rest of the machine (other people's work).
- **The rest of the harness**: `--scenario gateway` (issue 3: the gateway's latency and sustained
  deliveries/s beside the relays, a ladder of rates) and `--scenario large-channel` (issue 4: one channel
  of 1,000 members, buffered and direct fan-out beside the relay) run the same stack, clients and recorder
  with the definitions of their issues (a delivery excludes the sender's own copy there); they are not
  part of `all`. `python -m bench.load.write_path`, `.fanout_shapes` and `.send_profile` need no stack and
  stay separate entry points. What moved where, and the re-run beside the old scripts' numbers:
  [harness.md](harness.md).
""".strip("\n").splitlines()


def nan_safe(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x
