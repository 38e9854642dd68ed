"""Real processes for tests that cross them: a private Redis, daphne gateways on the test database.

The async tests that use them make their rows through channels' ``database_sync_to_async``, not
``asyncio.to_thread``: the former gives each call's pooled connection back, while a plain
``to_thread`` worker kept its connection past the test, and the test database could not be
dropped at the session's end.
"""
from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Callable

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import LIFTED_RATE_LIMITS

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not met within {timeout}s")


def _read_log(log) -> str:
    log.seek(0)
    text = log.read().decode(errors="replace")
    log.seek(0)
    log.truncate()
    return text


def _terminate(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM, and SIGKILL if it is still there after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()


def service_env(redis_url: str) -> dict[str, str]:
    """What a gateway or worker process needs to share the test database and a Redis."""
    db = settings.DATABASES["default"]
    return {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{connection.settings_dict['NAME']}",
        "REDIS_URL": redis_url,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PARLEY_GATEWAY_TAIL_CHECK_SECONDS": "1",
        **LIFTED_RATE_LIMITS,
    }


class RedisServer:
    """A private redis-server, so a test can restart it without disturbing anyone else."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._pong, what=f"redis on {self.port}")

    def _pong(self) -> bool:
        with closing(socket.create_connection(("127.0.0.1", self.port), timeout=1)) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def restart(self, down_seconds: float = 1.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


class Gateway:
    """One gateway process (daphne, `python -m gateway`) serving Parley on the test database."""

    def __init__(self, redis_url: str, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.redis_url = redis_url
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        # A file, not a pipe: a pipe nobody reads fills up and freezes a chatty process.
        self._log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **service_env(self.redis_url), **self.extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "-b", "127.0.0.1", "-p", str(self.port), "chatproject.asgi:application"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._log,
        )
        try:
            wait_for(lambda: urllib.request.urlopen(f"{self.url}/healthz", timeout=1).status == 200,
                     what=f"gateway on {self.port}")
        except TimeoutError as error:
            raise TimeoutError(f"{error}: {self.stop()[-2000:]}") from None

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> str:
        """Stop and return what it wrote to stderr (server errors show up there)."""
        if self.process is None:
            return ""
        _terminate(self.process, 10)
        self.process = None
        return _read_log(self._log)


class CeleryWorker:
    """A real Celery worker (all queues) on the test database and the given Redis broker."""

    def __init__(self, redis_url: str, extra_env: dict[str, str] | None = None) -> None:
        self.redis_url = redis_url
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        # A file, not a pipe: a pipe nobody reads fills up and freezes a chatty process.
        self._log = tempfile.TemporaryFile()

    def start(self) -> None:
        env = {**os.environ, **service_env(self.redis_url), **self.extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "chatproject", "worker", "--pool=solo", "--concurrency=1",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._log,
        )

    def stop(self) -> str:
        if self.process is None:
            return ""
        _terminate(self.process, 15)
        self.process = None
        return _read_log(self._log)


class HAProxy:
    """HAProxy with the stack's own configuration (stack.haproxy.cfg) in front of ``gateways``,
    on a free port, its runtime API on a socket of its own."""

    def __init__(self, gateways: list[Gateway]) -> None:
        self.port = free_port()
        self.gateways = gateways
        self.directory = tempfile.mkdtemp(prefix="parley-haproxy-")
        self.socket = os.path.join(self.directory, "runtime.sock")
        self.process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, until: Callable[[dict[str, str]], bool] | None = None) -> None:
        """Start, and wait ``until`` the servers' states say so (by default: every one UP)."""
        until = until or (lambda states: bool(states) and set(states.values()) == {"UP"})
        env = {**os.environ, "PARLEY_LB_BIND": f"127.0.0.1:{self.port}", "PARLEY_LB_SOCKET": self.socket,
               **{f"PARLEY_GATEWAY{i}": f"127.0.0.1:{g.port}" for i, g in enumerate(self.gateways, 1)}}
        self.process = subprocess.Popen([shutil.which("haproxy") or "haproxy", "-W", "-db", "-f", "stack.haproxy.cfg"],
                                        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            wait_for(lambda: until(self.states()), what="haproxy with the gateways' states expected")
        except TimeoutError as error:
            raise TimeoutError(f"{error}: {self.stop()[-2000:]}") from None

    def runtime(self, command: str) -> str:
        """One command of HAProxy's runtime API (``set server gateways/gateway1 state drain``...)."""
        with closing(socket.socket(socket.AF_UNIX)) as s:
            s.settimeout(5)
            s.connect(self.socket)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self, *, backups: bool = False) -> dict[str, dict[str, str]]:
        """``show stat`` of the gateways' backend, by server name: the active servers (and the
        fail-open backups, if asked)."""
        lines = self.runtime("show stat").lstrip("# ").splitlines()
        return {row["svname"]: row for row in csv.DictReader(lines)
                if row["pxname"] == "gateways" and row["svname"] != "BACKEND" and (backups or row["bck"] == "0")}

    def states(self) -> dict[str, str]:
        """UP, DOWN, DRAIN, MAINT (and "UP 1/3"-style transitions) by server name."""
        return {name: row["status"] for name, row in self.stats().items()}

    def sessions(self) -> dict[str, int]:
        """Connections open through HAProxy now, by server name."""
        return {name: int(row["scur"]) for name, row in self.stats().items()}

    def stop(self) -> str:
        if self.process is None:
            return ""
        _terminate(self.process, 10)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
        return _read_log(self._log)


# --- Fixtures (import them into a test module that starts real processes) ------------------

@pytest.fixture
def redis_server():
    """A private redis-server for the test, stopped after it."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateways(redis_server):
    """``gateways(n, **env)`` starts n daphne gateways on the private Redis and returns them;
    every gateway started is stopped after the test."""
    started: list[Gateway] = []

    def start(n: int = 1, **env: str) -> list[Gateway]:
        for _ in range(n):
            gateway = Gateway(redis_server.url, extra_env=env)
            gateway.start()
            started.append(gateway)
        return started[-n:]

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def haproxy():
    """``haproxy(gateways)`` starts HAProxy with stack.haproxy.cfg in front of them (stopped after
    the test). Without the haproxy command the test is skipped, and fails in CI (.ci/run installs it)."""
    if shutil.which("haproxy") is None:
        from tests.conftest import IN_CI
        message = "haproxy is not installed (Debian: apt-get install haproxy)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    started: list[HAProxy] = []

    def start(gateways: list[Gateway], until: Callable[[dict[str, str]], bool] | None = None) -> HAProxy:
        balancer = HAProxy(gateways)
        balancer.start(until)
        started.append(balancer)
        return balancer

    yield start
    for balancer in started:
        balancer.stop()
