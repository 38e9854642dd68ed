"""The cluster under test, started from Procfile.stack and controlled process by process.

The process list has one home: ``Procfile.stack`` at the repository root (parsed with
honcho's own parser) and its ``stack.env``. This module only overrides the environment (the
benchmark's database, lifted rate limits, a private Prometheus directory) and, with
``port_offset``, moves every port of the file by the same amount so a benchmark can run
beside someone else's stack. Each process runs as ``sh -c <its line>`` in its own process
group, so ``kill("gateway1")`` SIGKILLs exactly that gateway and ``restart("redis2")`` stops
and starts that Redis.
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

from honcho.environ import parse as parse_env
from honcho.environ import parse_procfile

ROOT = Path(__file__).resolve().parents[2]
PG_BASE = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB_NAME = "parley_bench7"
LIFTED = "1000000/s"
# The ports Procfile.stack uses, by process (what port_offset moves, everywhere in the file).
STACK_PORTS = {"redis1": 6391, "redis2": 6392, "gateway1": 8001, "gateway2": 8002, "balancer": 8080}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rate_limit_overrides() -> dict[str, str]:
    """Every PARLEY_RATE_* setting lifted: the benchmark measures capacity, not the abuse policy."""
    text = (ROOT / "chatproject" / "settings.py").read_text()
    names = sorted(set(re.findall(r"\b(PARLEY_RATE_[A-Z_]+)\b", text)) - {"PARLEY_RATE_LIMIT_EXEMPT_MODERATORS"})
    return {name: LIFTED for name in names}


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


def wait_until(check, timeout: float, what: str) -> float:
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


class Stack:
    def __init__(self, *, procfile: Path | None = None, env_file: Path | None = None, port_offset: int = 0,
                 overrides: dict[str, str] | None = None, log_dir: Path | None = None) -> None:
        procfile = procfile or ROOT / "Procfile.stack"
        env_file = env_file or ROOT / "stack.env"
        self.source = procfile
        self.port_offset = port_offset
        self.commands = {name: self._shift(cmd) for name, cmd in parse_procfile(procfile.read_text()).processes.items()}
        self.file_env = {k: self._shift(v) for k, v in parse_env(env_file.read_text()).items()} if env_file.exists() else {}
        self.ports = {name: port + port_offset for name, port in STACK_PORTS.items()}
        self.prometheus_dir = Path(tempfile.mkdtemp(prefix="bench7-prom-"))
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench7-logs-"))
        self.overrides = {
            "DATABASE_URL": f"{PG_BASE}/{DB_NAME}",
            "PROMETHEUS_MULTIPROC_DIR": str(self.prometheus_dir),
            "DJANGO_LOG_LEVEL": "WARNING",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PARLEY_CANARY_URLS": f"http://127.0.0.1:{self.ports['balancer']}",
            **rate_limit_overrides(),
            **(overrides or {}),
        }
        self.env = {**os.environ, **self.file_env, **self.overrides}
        self.env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{self.env.get('PATH', '')}"
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.procs: dict[str, subprocess.Popen] = {}
        self.events: list[tuple[float, str]] = []

    def _shift(self, text: str) -> str:
        if not self.port_offset:
            return text
        for port in STACK_PORTS.values():
            text = re.sub(rf"(?<!\d){port}(?!\d)", str(port + self.port_offset), text)
        return text

    @property
    def names(self) -> list[str]:
        return list(self.commands)

    def url(self, name: str = "balancer") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def busy_ports(self) -> list[str]:
        return [f"{name}:{port}" for name, port in self.ports.items() if port_open(port)]

    # --- one process ------------------------------------------------------------------------
    def start(self, name: str, wait: bool = True) -> float:
        if name in self.procs and self.procs[name].poll() is None:
            return 0.0
        log = open(self.log_dir / f"{name}.log", "ab")
        started = time.monotonic()
        self.procs[name] = subprocess.Popen(["sh", "-c", self.commands[name]], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.event(f"start {name}")
        if wait:
            self.wait_ready(name)
        return time.monotonic() - started

    def wait_ready(self, name: str, timeout: float = 60.0) -> float:
        proc = self.procs[name]

        def check() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}): {self.log_tail(name)}")
            if name.startswith("redis"):
                return redis_ping(self.ports[name])
            if name.startswith("gateway"):
                return http_ok(f"{self.url(name)}/healthz")
            if name == "balancer":
                return port_open(self.ports[name])
            return True

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

    # --- all of it --------------------------------------------------------------------------
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

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
        shutil.rmtree(self.prometheus_dir, ignore_errors=True)

    def flush_redis(self) -> None:
        for name in ("redis1", "redis2"):
            subprocess.run(["redis-cli", "-p", str(self.ports[name]), "flushall"], capture_output=True)


class Relay:
    """The Channels-tutorial relay (bench/relay) on daphne: the baseline, on the stack's Redis."""

    def __init__(self, stack: Stack, count: int = 2, base_port: int = 8191) -> None:
        self.stack = stack
        self.ports = [base_port + stack.port_offset + i for i in range(count)]
        self.procs: list[subprocess.Popen] = []

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{p}" for p in self.ports]

    def start(self) -> None:
        env = {**self.stack.env, "DJANGO_SETTINGS_MODULE": "bench.relay.settings", "RELAY_LAYER": "core",
               "REDIS_URL": f"redis://127.0.0.1:{self.stack.ports['redis2']}/2"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        for i, port in enumerate(self.ports):
            log = open(self.stack.log_dir / f"relay{i}.log", "ab")
            self.procs.append(subprocess.Popen(
                ["sh", "-c", f"exec .venv/bin/daphne -b 127.0.0.1 -p {port} bench.relay.asgi:application"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        for port in self.ports:
            wait_until(lambda: port_open(port), 60, f"relay on {port}")

    def kill(self, i: int) -> None:
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait(10)

    def restart(self, i: int) -> None:
        env = {**self.stack.env, "DJANGO_SETTINGS_MODULE": "bench.relay.settings", "RELAY_LAYER": "core",
               "REDIS_URL": f"redis://127.0.0.1:{self.stack.ports['redis2']}/2"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = open(self.stack.log_dir / f"relay{i}.log", "ab")
        self.procs[i] = subprocess.Popen(
            ["sh", "-c", f"exec .venv/bin/daphne -b 127.0.0.1 -p {self.ports[i]} bench.relay.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_until(lambda: port_open(self.ports[i]), 60, "relay restart")

    def cpu(self) -> float:
        return sum(group_cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        self.procs = []


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def migrate(env: dict[str, str]) -> None:
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "manage.py", "migrate", "--verbosity", "0"],
                   cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "chatproject.settings"}, check=True)
