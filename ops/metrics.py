"""Every Parley metric, defined once, and the ``GET /metrics`` view (docs/operations.md, "Metrics").

The domain floors carry no metrics code: operations observe what the core announces and what
the Celery tasks return (ops.observers), the gateway records its own deliveries here.

Several processes, one view. Gateways (daphne) and Celery workers each count in their own
memory. With ``PROMETHEUS_MULTIPROC_DIR`` set in the environment of every process *before it
starts* (prometheus-client decides at import), each process writes its samples to files in
that directory and ``/metrics`` on any of them sums the files: counters and histograms add
up, ``parley_open_connections`` adds the live processes, the gauges measured cluster-wide
take the most recent writer. Empty the directory before starting the processes. Without the
variable (``make run``, most tests) ``/metrics`` serves this process's registry.

The hot path stays cheap. A multiprocess observation is a locked write to a memory-mapped
file (about 12 µs); one message reaches every socket of a gateway, so the per-delivery
metrics (send-to-deliver, fan-out dispatch, acks) are tallied in process memory
(:class:`Tally`, well under 1 µs) and written out by :func:`flush`, which the gateway's tick
calls every second and ``/metrics`` calls before it answers. Nothing here touches the
database.
"""
from __future__ import annotations

import glob
import math
import os
import re
import threading
import time
from bisect import bisect_left
from collections import deque

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# The *_created series double the output and multiprocess mode has none: the same text either way.
disable_created_metrics()

# Send-to-deliver spans live delivery (milliseconds) and replay (a device that was away for
# an hour), so the buckets run from 5 ms to an hour.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# Stages are judged against the brief's budget (STAGE_BUDGET_MS): buckets around each budget,
# and up to a minute, so an overloaded stage shows by how much it is over.
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.035, 0.045, 0.07, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# The brief's latency budget per stage of a send, in milliseconds (DESIGN.md).
STAGE_BUDGET_MS = {
    "gateway_auth": 15,     # handshake accepted -> user and device authenticated, groups joined
    "durable_write": 45,    # do_send_message's transaction, commit included
    "fanout_dispatch": 70,  # commit (the after-commit publish) -> frame written to a socket
    "client_ack": 35,       # frame written -> the client's ack covering it received
    "response": 20,         # send frame received -> send.ok written
}

SEND_TO_DELIVER = Histogram(
    "parley_send_to_deliver_seconds",
    "Message created_at to its frame written to a socket, per delivery, by path.",
    ["path"], buckets=DELIVERY_BUCKETS,
)
STAGE = Histogram(
    "parley_stage_seconds", "Time spent in each stage of a send (budget in STAGE_BUDGET_MS).",
    ["stage"], buckets=STAGE_BUCKETS,
)
ACKS = Counter(
    "parley_acks", "Message frames written, by how their ack came: in_time or timeout "
    "(not within PARLEY_ACK_TIMEOUT_MS).", ["outcome"],
)
# Acks come on the client's timer (100 ms in the reference and browser clients) plus a round
# trip: buckets from 5 ms to the default ack timeout (PARLEY_ACK_TIMEOUT_MS, 2 s) and beyond.
ACK_LATENCY = Histogram(
    "parley_ack_latency_seconds", "Per message frame acked in time: frame written to a socket -> the client's "
    "cumulative ack covering it received (the contract's ack latency; the ones past PARLEY_ACK_TIMEOUT_MS "
    "count in parley_acks{outcome=\"timeout\"} instead).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5),
)
GATEWAY_CPU_PER_DELIVERY = Gauge(
    "parley_gateway_cpu_seconds_per_delivery", "Per gateway process (pid label): its CPU seconds (every thread) "
    "over the messages it wrote to sockets, across the last PARLEY_GATEWAY_CPU_WINDOW_SECONDS; NaN while it "
    "delivered nothing.", multiprocess_mode="all",
)
LAYER_BACKLOG = Gauge(
    "parley_layer_backlog_seconds", "Per gateway process (pid label), at its last tick: how long the oldest "
    "event waiting for it in the channel layer has waited (0 when none waits): how far its hub's receive is "
    "behind.", multiprocess_mode="all",
)
ACK_TIMEOUT_RATIO = Gauge(
    "parley_ack_timeout_ratio", "Share of acks that timed out, across all gateways, over the "
    "degraded-mode window.", multiprocess_mode="mostrecent",
)
ACK_TIMEOUT_DEVICE_SHARE = Gauge(
    "parley_ack_timeout_device_share", "Share of devices with an ack timeout among those with acks "
    "decided, across all gateways, over the degraded-mode window (the signal degraded mode weighs).",
    multiprocess_mode="mostrecent",
)
QUEUE_LAG = Gauge(
    "parley_queue_lag_seconds", "Age of the oldest task waiting in each Celery queue.",
    ["queue"], multiprocess_mode="mostrecent",
)
QUEUE_LENGTH = Gauge(
    "parley_queue_length", "Tasks waiting in each Celery queue.", ["queue"], multiprocess_mode="mostrecent",
)
OPEN_CONNECTIONS = Gauge(
    "parley_open_connections", "Authenticated WebSocket connections.", multiprocess_mode="livesum",
)
DISCONNECTS = Counter(
    "parley_disconnects", "Greeted connections that closed, except planned restarts (1012).",
)
RECONNECTS = Counter(
    "parley_reconnects", "Hellos, by outcome: resumed (from the client's or the device's "
    "cursors) or fresh (nothing to resume from).", ["outcome"],
)
GATEWAY_TYPING_SHARE = Gauge(
    "parley_gateway_typing_share", "Per gateway process (pid label), at its last tick: the share of the "
    "clients' frames and events its sockets handled since the tick before that which were typing that went "
    "on (degraded mode's lower gateway-lag line applies while it is at least PARLEY_DEGRADED_TYPING_SHARE).",
    multiprocess_mode="all",
)
GATEWAY_LAG = Histogram(
    "parley_gateway_lag_seconds", "Per gateway tick: the longest of how late the event loop woke the "
    "tick, the age of the oldest message event a socket handled since the last one, the longest "
    "wait for a database thread, how long clients' frames waited to be handled (across sockets), and "
    "the age of the oldest event still waiting for the process in the channel layer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
GC_PAUSE = Histogram(
    "parley_gc_pause_seconds", "Each garbage collection in a gateway process (gateway.heap), by "
    "generation: the process runs nothing else meanwhile.", ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
REPLAYED = Counter("parley_replayed_messages", "Messages sent in replay pages (hello and replay frames).")
ADMISSION_WAIT = Histogram(
    "parley_replay_admission_wait_seconds", "Time a replay waited for the admission budget.",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ADMISSION_WAITING = Gauge(
    "parley_replay_admission_waiting", "Replays waiting for the admission budget.", multiprocess_mode="livesum",
)
MESSAGES_STORED = Counter("parley_messages_stored", "Messages stored (committed) by do_send_message.")
PUSHES = Counter(
    "parley_push_deliveries", "Web Push attempts, by outcome: sent, failed (an attempt that "
    "failed; it is retried or becomes a dead letter), dead_letter, gone (subscription expired).",
    ["outcome"],
)
DEGRADED_LEVEL = Gauge(
    "parley_degraded_level", "Degraded mode: 0 normal, 1 typing and presence shed, "
    "2 receipt broadcasts deferred too.", multiprocess_mode="mostrecent",
)
DEGRADED_FORCED = Gauge(
    "parley_degraded_forced", "1 while an admin override forces the degraded-mode level.",
    multiprocess_mode="mostrecent",
)
CANARY_LATENCY = Histogram(
    "parley_canary_send_to_deliver_seconds", "The canary's send to delivery on another socket.",
    buckets=DELIVERY_BUCKETS[:11],
)
CANARY_RUNS = Counter("parley_canary_runs", "Canary runs by outcome (ok, failed).", ["outcome"])
CANARY_LAST_SUCCESS = Gauge(
    "parley_canary_last_success_timestamp_seconds", "When the canary last got its message through.",
    multiprocess_mode="mostrecent",
)


# --- Tallies: per-delivery observations, summed in memory ---------------------------------

class Tally:
    """A histogram child (or a counter child) fed in process memory and written out by flush().

    Thread-safe; the lock is uncontended in practice (the event loop's thread observes, the
    tick flushes on the same thread, /metrics flushes from a worker thread).
    """

    _all: list["Tally"] = []

    def __init__(self, child) -> None:
        self._child = child
        self._bounds = getattr(child, "_upper_bounds", None)
        self._lock = threading.Lock()
        self._reset()
        Tally._all.append(self)

    def _reset(self) -> None:
        self._counts = [0] * len(self._bounds) if self._bounds else [0]
        self._sum = 0.0

    def observe(self, value: float) -> None:
        assert self._bounds is not None, "a counter's tally takes inc(), not observe()"
        with self._lock:
            self._counts[bisect_left(self._bounds, value)] += 1  # first bucket with value <= bound
            self._sum += value

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self._sum += amount

    def flush(self) -> None:
        with self._lock:
            counts, total = self._counts, self._sum
            self._reset()
        if self._bounds is None:
            if total:
                self._child.inc(total)
            return
        # prometheus-client has no bulk observe: add to the child's bucket and sum values, the
        # same ones Histogram.observe increments (per bucket, not cumulative).
        for index, count in enumerate(counts):
            if count:
                self._child._buckets[index].inc(count)
        if any(counts):
            self._child._sum.inc(total)


DELIVERED = {path: Tally(SEND_TO_DELIVER.labels(path=path)) for path in ("direct", "buffered", "replay")}
FANOUT_DISPATCH = Tally(STAGE.labels(stage="fanout_dispatch"))
CLIENT_ACK = Tally(STAGE.labels(stage="client_ack"))
ACK_LATENCIES = Tally(ACK_LATENCY)
ACKS_IN_TIME = Tally(ACKS.labels(outcome="in_time"))
ACK_TIMEOUTS = Tally(ACKS.labels(outcome="timeout"))


def flush() -> None:
    """Write the tallies out (the gateway tick calls this every second)."""
    for tally in Tally._all:
        tally.flush()


class CpuPerDelivery:
    """CPU seconds per delivered message over a sliding window of samples (the gateway's tick
    feeds it its process CPU time and its running count of deliveries)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._samples: deque[tuple[float, float, int]] = deque()  # (at, cpu seconds, deliveries)

    def sample(self, *, at: float, cpu: float, deliveries: int) -> float:
        """Add a sample; the ratio over the window (NaN when nothing was delivered in it)."""
        self._samples.append((at, cpu, deliveries))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self.window:
            self._samples.popleft()
        first = self._samples[0]
        delivered = deliveries - first[2]
        return (cpu - first[1]) / delivered if delivered > 0 else math.nan


# --- Timers ---------------------------------------------------------------------------------

def observe_stage(stage: str, started: float) -> None:
    """Record a stage that began at ``started`` (``time.perf_counter()``) and ends now."""
    STAGE.labels(stage=stage).observe(time.perf_counter() - started)


# --- GET /metrics ---------------------------------------------------------------------------

def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


_PID_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def _forget_dead_processes(path: str) -> None:
    """Drop the live gauges of processes that died without saying so (a SIGKILLed gateway
    would otherwise keep its open connections counted). The directory is per host, so a
    pid that is not alive here is gone."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _PID_FILE.search(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:
            pass  # alive, someone else's


def exposition() -> bytes:
    flush()
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    _forget_dead_processes(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


@require_GET
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.PARLEY_METRICS_TOKEN
    if token and request.headers.get("Authorization", "") != f"Bearer {token}":
        return HttpResponse("metrics need the bearer token\n", status=401, content_type="text/plain")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
