"""Real processes for tests that cross them: a private Redis, daphne gateways on the test database."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path

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
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
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
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
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
