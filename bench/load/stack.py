"""The one process runner of bench/, the benchmark database, and CPU accounting from /proc.

``Processes`` runs named commands, each as ``sh -c <command>`` in its own process group with
its output in a log file, so ``kill(name)`` SIGKILLs exactly that process (and a worker's
pool) and ``cpu(name)`` sums the whole group. ``Stack`` is the cluster under test: the
process list has one home, ``Procfile.stack`` at the repository root (parsed with honcho's
own parser) and its ``stack.env``; this module only overrides the environment (the
benchmark's database, lifted rate limits, a private Prometheus directory) and, with
``port_offset``, moves every port of the file by the same amount so a benchmark can run
beside someone else's stack. ``Relay`` adds the Channels-tutorial relay (bench/relay) to it.
The scripts that need no stack (write_path, fanout_shapes) run their own few servers with
``Processes`` on free ports.

``recreate_database(name)`` drops, creates (and ``migrate`` migrates) a benchmark database:
every entry point of bench/ starts from an empty one.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
PG_BASE = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB_NAME = "parley_bench7"
LIFTED = "1000000/s"
# The ports Procfile.stack uses, by process (what port_offset moves, everywhere in the file).
STACK_PORTS = {"redis1": 6391, "redis2": 6392, "gateway1": 8001, "gateway2": 8002, "balancer": 8080}
GATEWAYS = ["gateway1", "gateway2"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the database -----------------------------------------------------------------------------

def recreate_database(name: str = DB_NAME) -> None:
    """Drop and create ``name`` (a benchmark's own database: its name must contain "bench")."""
    import psycopg
    from psycopg import sql

    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: a benchmark database's name contains 'bench'")
    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_url(name: str = DB_NAME) -> str:
    return f"{PG_BASE}/{name}"


def migrate(env: dict[str, str], settings: str = "chatproject.settings", *extra: str) -> None:
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "manage.py", "migrate", "--verbosity", "0", *extra],
                   cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": settings}, check=True)


def rate_limit_overrides() -> dict[str, str]:
    """Every PARLEY_RATE_* setting lifted: the benchmarks measure capacity, not the abuse policy."""
    text = (ROOT / "chatproject" / "settings.py").read_text()
    names = sorted(set(re.findall(r"\b(PARLEY_RATE_[A-Z_]+)\b", text)) - {"PARLEY_RATE_LIMIT_EXEMPT_MODERATORS"})
    return {name: LIFTED for name in names}


# --- probes -----------------------------------------------------------------------------------

def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with closing(socket.create_connection(("127.0.0.1", port), timeout=0.5)):
            return True
    except OSError:
        return False


def redis_ping(port: int) -> bool:
    try:
        with closing(socket.create_connection(("127.0.0.1", port), timeout=1)) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except Exception:  # noqa: BLE001 - not up
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout}s")


def proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def group_cpu_seconds(pgid: int) -> float:
    """CPU (user + system) of every live process in a process group (a worker's pool too)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields[2]) == pgid:  # pgrp
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / CLK_TCK
    return total


def machine_busy_seconds() -> float:
    """Busy CPU time of the whole machine (all cores): what else ran shows up here."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def postgres_cpu(database: str = DB_NAME) -> float:
    """CPU seconds of the PostgreSQL backends connected to ``database`` (live ones)."""
    import psycopg

    try:
        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
            pids = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database])]
    except Exception:  # noqa: BLE001
        return 0.0
    return sum(proc_cpu_seconds(pid) for pid in pids)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- the runner -------------------------------------------------------------------------------

class Processes:
    """Named processes, each ``sh -c <command>`` in its own process group, logs in ``log_dir``."""

    def __init__(self, env: dict[str, str] | None = None, log_dir: Path | None = None) -> None:
        self.env = {**os.environ, **(env or {})}
        self.env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{self.env.get('PATH', '')}"
        # The tree the benchmark runs from, ahead of the editable install's: a "before" run from
        # a clone whose .venv is linked to another tree's must serve the clone's code. Without
        # it a console script (parley-gateway) imported its first packages from the installed
        # tree and the rest from its working directory.
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), self.env.get("PYTHONPATH")]))
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.commands: dict[str, str] = {}
        self.ready_checks: dict[str, Callable[[], bool]] = {}
        self.own_env: dict[str, dict[str, str]] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.events: list[tuple[float, str]] = []

    def add(self, name: str, command: str, ready: Callable[[], bool] | None = None,
            env: dict[str, str] | None = None) -> None:
        """Declare a process: ``ready`` says when it serves; ``env`` replaces the shared one."""
        self.commands[name] = command
        if ready is not None:
            self.ready_checks[name] = ready
        if env is not None:
            self.own_env[name] = env

    def start(self, name: str, wait: bool = True) -> float:
        if name in self.procs and self.procs[name].poll() is None:
            return 0.0
        log = open(self.log_dir / f"{name}.log", "ab")
        started = time.monotonic()
        self.procs[name] = subprocess.Popen(["sh", "-c", self.commands[name]], cwd=ROOT,
                                            env=self.own_env.get(name, self.env),
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.event(f"start {name}")
        if wait:
            self.wait_ready(name)
        return time.monotonic() - started

    def wait_ready(self, name: str, timeout: float = 60.0) -> float:
        proc = self.procs[name]
        ready = self.ready_checks.get(name, lambda: True)

        def check() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}): {self.log_tail(name)}")
            return ready()

        return wait_until(check, timeout, name)

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, name: str) -> None:
        """SIGKILL, no goodbye: the process and its children (a worker's pool) die at once."""
        self.signal(name, signal.SIGKILL)
        self.event(f"SIGKILL {name}")
        if name in self.procs:
            self.procs[name].wait(10)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        self.signal(name, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(name, signal.SIGKILL)
            proc.wait(10)
        self.event(f"stop {name}")

    def restart(self, name: str, down_seconds: float = 1.0) -> float:
        self.stop(name)
        time.sleep(down_seconds)
        return self.start(name)

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def pid(self, name: str) -> int | None:
        proc = self.procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def cpu(self, name: str) -> float:
        pid = self.pid(name)
        return group_cpu_seconds(pid) if pid else 0.0

    def event(self, what: str) -> None:
        self.events.append((time.time(), what))

    def log_tail(self, name: str, n: int = 2000) -> str:
        try:
            return (self.log_dir / f"{name}.log").read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def tracebacks(self) -> dict[str, int]:
        """Tracebacks in each process's log so far (the logs keep them; a reader looks there)."""
        counts = {name: self.log_tail(name, 10_000_000).count("Traceback") for name in self.procs}
        return {name: n for name, n in counts.items() if n}


class Stack(Processes):
    """The processes of Procfile.stack with the benchmark's environment."""

    def __init__(self, *, procfile: Path | None = None, env_file: Path | None = None, port_offset: int = 0,
                 overrides: dict[str, str] | None = None, log_dir: Path | None = None,
                 database: str = DB_NAME) -> None:
        from honcho.environ import parse as parse_env
        from honcho.environ import parse_procfile

        procfile = procfile or ROOT / "Procfile.stack"
        env_file = env_file or ROOT / "stack.env"
        self.source = procfile
        self.port_offset = port_offset
        self.database = database
        self.ports = {name: port + port_offset for name, port in STACK_PORTS.items()}
        self.prometheus_dir = Path(tempfile.mkdtemp(prefix="bench7-prom-"))
        super().__init__(log_dir=log_dir or Path(tempfile.mkdtemp(prefix="bench7-logs-")))
        self.procfile = {name: self._shift(cmd) for name, cmd in parse_procfile(procfile.read_text()).processes.items()}
        self.commands.update(self.procfile)
        self.file_env = {k: self._shift(v) for k, v in parse_env(env_file.read_text()).items()} if env_file.exists() else {}
        self.overrides = {
            "DATABASE_URL": database_url(database),
            "PROMETHEUS_MULTIPROC_DIR": str(self.prometheus_dir),
            "DJANGO_LOG_LEVEL": "WARNING",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PARLEY_CANARY_URLS": f"http://127.0.0.1:{self.ports['balancer']}",
            **rate_limit_overrides(),
            **(overrides or {}),
        }
        self.env.update({**self.file_env, **self.overrides})
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        for name in self.procfile:
            self.ready_checks[name] = self._ready_check(name)

    def _shift(self, text: str) -> str:
        # Files the Procfile keeps under /tmp/parley-stack* (beat's schedule) go to this run's
        # own directory: another stack on the machine uses the same paths.
        text = text.replace("/tmp/parley-stack", str(self.log_dir / "parley-stack"))
        if not self.port_offset:
            return text
        for port in STACK_PORTS.values():
            text = re.sub(rf"(?<!\d){port}(?!\d)", str(port + self.port_offset), text)
        return text

    def _ready_check(self, name: str) -> Callable[[], bool]:
        if name.startswith("redis"):
            return lambda: redis_ping(self.ports[name])
        if name.startswith("gateway"):
            return lambda: http_ok(f"{self.url(name)}/healthz")
        if name == "balancer":
            return lambda: port_open(self.ports[name])
        return lambda: True

    @property
    def names(self) -> list[str]:
        """The Procfile's processes (not the relay or other extras)."""
        return list(self.procfile)

    def url(self, name: str = "balancer") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def busy_ports(self) -> list[str]:
        return [f"{name}:{port}" for name, port in self.ports.items() if port_open(port)]

    def start_all(self, names: list[str] | None = None) -> None:
        busy = self.busy_ports()
        if busy:
            raise RuntimeError(f"ports already in use (another stack running?): {busy}; try --port-offset")
        shutil.rmtree(self.prometheus_dir, ignore_errors=True)
        self.prometheus_dir.mkdir(parents=True)
        names = names or self.names
        for name in names:  # Redis first (the file's order), then the rest
            self.start(name, wait=False)
        for name in names:
            self.wait_ready(name)

    def only(self, names: list[str], restart: list[str] | None = None) -> None:
        """Run exactly ``names`` of the Procfile (stop the rest), restarting those in ``restart``."""
        for name in self.names:
            if name not in names or name in (restart or []):
                self.stop(name)
        for name in names:
            self.start(name, wait=False)
        for name in names:
            self.wait_ready(name)

    def stop_all(self) -> None:
        super().stop_all()
        shutil.rmtree(self.prometheus_dir, ignore_errors=True)

    def flush_redis(self) -> None:
        for name in ("redis1", "redis2"):
            subprocess.run(["redis-cli", "-p", str(self.ports[name]), "flushall"], capture_output=True)


class Relay:
    """The Channels-tutorial relay (bench/relay) on daphne: the baseline, on the stack's Redis.

    ``layer`` is ``core`` (RedisChannelLayer, as Parley) or ``pubsub``; with ``database`` the
    relay can also store (its ``relay-persist`` path) in the stack's database.
    """

    def __init__(self, stack: Stack, count: int = 2, base_port: int = 8191, layer: str = "core") -> None:
        self.stack = stack
        self.ports = [base_port + stack.port_offset + i for i in range(count)]
        self.names = [f"relay{i}" for i in range(count)]
        env = {**stack.env, "DJANGO_SETTINGS_MODULE": "bench.relay.settings", "RELAY_LAYER": layer,
               "REDIS_URL": f"redis://127.0.0.1:{stack.ports['redis2']}/2"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.env = env
        for name, port in zip(self.names, self.ports):
            stack.add(name, f"exec .venv/bin/daphne -b 127.0.0.1 -p {port} bench.relay.asgi:application",
                      ready=lambda port=port: port_open(port), env=env)

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{p}" for p in self.ports]

    def start(self) -> None:
        for name in self.names:
            self.stack.start(name, wait=False)
        for name in self.names:
            self.stack.wait_ready(name)

    def kill(self, i: int) -> None:
        self.stack.kill(self.names[i])

    def restart(self, i: int) -> None:
        self.stack.start(self.names[i])

    def cpu(self) -> float:
        return sum(self.stack.cpu(name) for name in self.names)

    def stop(self) -> None:
        for name in self.names:
            self.stack.stop(name, timeout=10)

    def create_tables(self) -> None:
        """The persisting relay's table, in the stack's database."""
        migrate(self.env, "bench.relay.settings", "--run-syncdb")
