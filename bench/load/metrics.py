"""Reading Parley's /metrics: histogram deltas between two scrapes, and quantiles from buckets.

With PROMETHEUS_MULTIPROC_DIR shared by the stack, /metrics on one gateway sums every
gateway and worker of the machine, so one scrape before and one after a phase give the
phase's stage breakdown (``parley_stage_seconds``) and send-to-deliver by path.
"""
from __future__ import annotations

import math
import os
import urllib.request
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

STAGES = ["gateway_auth", "durable_write", "fanout_dispatch", "client_ack", "response"]
BUDGET_MS = {"gateway_auth": 15, "durable_write": 45, "fanout_dispatch": 70, "client_ack": 35, "response": 20}


def scrape(base_url: str, timeout: float = 20.0, attempts: int = 2) -> dict[str, Any]:
    """{'hist': {(name, labels): {le: count}}, 'sum': {...}, 'value': {(name, labels): v}}."""
    headers = {}
    token = os.environ.get("PARLEY_METRICS_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    text = None
    error: Exception | None = None
    for _ in range(attempts):
        try:
            text = urllib.request.urlopen(urllib.request.Request(f"{base_url}/metrics", headers=headers),
                                          timeout=timeout).read().decode()
            break
        except Exception as e:  # noqa: BLE001 - a dead or overloaded gateway: try again, then give up
            error = e
    if text is None:
        return {"error": repr(error), "hist": {}, "value": {}}
    hist: dict[tuple, dict[float, float]] = defaultdict(dict)
    value: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if sample.name.endswith("_bucket"):
                le = float(labels.pop("le"))
                hist[(sample.name[:-7], tuple(sorted(labels.items())))][le] = sample.value
            else:
                value[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return {"hist": dict(hist), "value": value}


def delta_hist(before: dict, after: dict, name: str, **labels: str) -> dict[float, float]:
    key = (name, tuple(sorted(labels.items())))
    a = after.get("hist", {}).get(key, {})
    b = before.get("hist", {}).get(key, {})
    return {le: a[le] - b.get(le, 0.0) for le in a}


def quantile(buckets: dict[float, float], q: float) -> float:
    """Linear interpolation inside the bucket holding the q-th observation (as histogram_quantile)."""
    if not buckets:
        return float("nan")
    les = sorted(buckets)
    total = buckets[les[-1]]
    if total <= 0:
        return float("nan")
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le in les:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return les[-1]


def counter(snapshot: dict, name: str, **labels: str) -> float:
    return snapshot.get("value", {}).get((name, tuple(sorted(labels.items()))), 0.0)


def breakdown(before: dict, after: dict) -> dict[str, Any]:
    """p50/p95 per stage and send-to-deliver per path over the interval, with counts."""
    out: dict[str, Any] = {"stages": {}, "send_to_deliver": {}}
    if before.get("error") or after.get("error"):
        out["scrape_error"] = before.get("error") or after.get("error")
    for stage in STAGES:
        b = delta_hist(before, after, "parley_stage_seconds", stage=stage)
        n = b.get(float("inf"), 0.0)
        out["stages"][stage] = {"count": int(n), "budget_ms": BUDGET_MS[stage],
                                "p50_ms": round(quantile(b, 0.5) * 1000, 1) if n else None,
                                "p95_ms": round(quantile(b, 0.95) * 1000, 1) if n else None}
    for path in ("direct", "buffered", "replay"):
        b = delta_hist(before, after, "parley_send_to_deliver_seconds", path=path)
        n = b.get(float("inf"), 0.0)
        if n:
            out["send_to_deliver"][path] = {"count": int(n), "p50_ms": round(quantile(b, 0.5) * 1000, 1),
                                            "p95_ms": round(quantile(b, 0.95) * 1000, 1),
                                            "p99_ms": round(quantile(b, 0.99) * 1000, 1)}
    acks = {o: counter(after, "parley_acks_total", outcome=o) - counter(before, "parley_acks_total", outcome=o)
            for o in ("in_time", "timeout")}
    out["acks"] = {k: int(v) for k, v in acks.items()}
    out["messages_stored"] = int(counter(after, "parley_messages_stored_total")
                                 - counter(before, "parley_messages_stored_total"))
    out["replayed_messages"] = int(counter(after, "parley_replayed_messages_total")
                                   - counter(before, "parley_replayed_messages_total"))
    b = delta_hist(before, after, "parley_replay_admission_wait_seconds")
    if b.get(float("inf")):
        out["replay_admission_wait"] = {"count": int(b[float("inf")]),
                                        "p50_ms": round(quantile(b, 0.5) * 1000, 1),
                                        "p95_ms": round(quantile(b, 0.95) * 1000, 1)}
    out["reconnects"] = {o: int(counter(after, "parley_reconnects_total", outcome=o)
                                - counter(before, "parley_reconnects_total", outcome=o)) for o in ("resumed", "fresh")}
    return out


def gauge(snapshot: dict, name: str) -> float | None:
    for (n, _labels), v in snapshot.get("value", {}).items():
        if n == name:
            return v
    return None


def stage_table(b: dict[str, Any]) -> list[str]:
    lines = ["| stage | budget ms | count | p50 ms | p95 ms |", "|---|---:|---:|---:|---:|"]
    for stage, s in b["stages"].items():
        lines.append(f"| {stage} | {s['budget_ms']} | {s['count']} | {s['p50_ms'] if s['p50_ms'] is not None else '-'} "
                     f"| {s['p95_ms'] if s['p95_ms'] is not None else '-'} |")
    for path, s in b["send_to_deliver"].items():
        lines.append(f"| send_to_deliver ({path}) | | {s['count']} | {s['p50_ms']} | {s['p95_ms']} |")
    return lines
