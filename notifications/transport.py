"""One HTTP exchange with a push service, held to the rules of docs/security.md ("Push endpoints").

pywebpush encrypts, signs and posts the push through the requests session it is given;
:func:`exchange` makes that session, for one attempt, from a checked :class:`PushTarget`:

* it connects only to the addresses checked for this attempt: the name stays in the URL for
  TLS (SNI and the certificate check) and for the Host header, but it is not resolved again,
  so a DNS answer that changed since the check is never used;
* it never follows a redirect, and takes no proxy or .netrc from the environment;
* it reads at most ``PARLEY_PUSH_MAX_RESPONSE_BYTES`` of the answer's body and keeps none of it:
  only the status and the ``Retry-After`` header reach Parley's records;
* the whole exchange has one deadline, ``PARLEY_PUSH_TIMEOUT_SECONDS``: a watchdog shuts the
  sockets down when it passes, wherever the exchange is blocked. A per-read timeout alone lets
  a service that dribbles its answer hold a worker for as long as it likes.
"""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError
from urllib3.poolmanager import PoolManager
from urllib3.util.connection import create_connection

from .endpoints import PushTarget


class _Deadline:
    """Shuts the attempt's sockets down once ``seconds`` have passed.

    It holds a duplicate of each socket's descriptor: shutting the duplicate down ends the
    exchange on the original (shutdown acts on the socket, not on one descriptor), and being
    ours, the duplicate cannot be closed and its number reused by someone else before
    :meth:`stop`.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._stopped = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        duplicate = sock.dup()
        with self._lock:
            if not self._stopped:
                self._sockets.append(duplicate)
                if self.expired:
                    _shut(duplicate)
                return
        duplicate.close()

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._stopped = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def _expire(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by its peer
        pass


@dataclass(frozen=True)
class _Route:
    target: PushTarget
    deadline: _Deadline = field(repr=False)


def _connect(connection: HTTPConnection, route: _Route) -> socket.socket:
    """The TCP connection, to one of the checked addresses and to nothing else."""
    if connection.host.rstrip(".").lower() != route.target.host.rstrip(".").lower():
        raise NewConnectionError(connection, "refused: not the push service this attempt checked")
    error: OSError | None = None
    for address in route.target.addresses:
        try:
            sock = create_connection((address, connection.port), connection.timeout,
                                     source_address=connection.source_address,
                                     socket_options=connection.socket_options)
        except OSError as exc:
            error = exc
            continue
        route.deadline.watch(sock)
        return sock
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(connection, f"connecting to {connection.host} timed out")
    raise NewConnectionError(connection, f"could not connect to {connection.host}: {error}")


class _PinnedHTTPConnection(HTTPConnection):
    def __init__(self, *args: Any, route: _Route, **kwargs: Any) -> None:
        self._route = route
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        return _connect(self, self._route)


class _PinnedHTTPSConnection(HTTPSConnection):
    def __init__(self, *args: Any, route: _Route, **kwargs: Any) -> None:
        self._route = route
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        return _connect(self, self._route)


class _PinnedPoolManager(PoolManager):
    def __init__(self, *, route: _Route, **kwargs: Any) -> None:
        self._route = route
        super().__init__(**kwargs)

    def _new_pool(self, scheme: str, host: str, port: int,
                  request_context: dict[str, Any] | None = None) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        pool.conn_kw["route"] = self._route
        return pool


class _PushAdapter(HTTPAdapter):
    def __init__(self, route: _Route, *, max_body: int) -> None:
        self._route = route
        self._max_body = max_body
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        self.poolmanager = _PinnedPoolManager(route=self._route, num_pools=connections, maxsize=maxsize,
                                              block=block, **pool_kwargs)

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        try:
            resp.read(self._max_body, decode_content=False)  # drain a short answer; the rest stays unread
        except (HTTPError, OSError):
            pass  # the status is all we use
        finally:
            resp.close()
        # Nothing of the body is kept: error text from an internal service never reaches a record.
        response._content = b""
        return response


class _PushSession(requests.Session):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # A push service has no reason to send us elsewhere; a 3xx is an answer like any other.
        kwargs["allow_redirects"] = False
        return super().send(request, **kwargs)


@dataclass
class Exchange:
    session: requests.Session
    _deadline: _Deadline = field(repr=False)

    @property
    def timed_out(self) -> bool:
        return self._deadline.expired


@contextmanager
def exchange(target: PushTarget) -> Iterator[Exchange]:
    """A session for one attempt to ``target``, its deadline running from now."""
    deadline = _Deadline(settings.PARLEY_PUSH_TIMEOUT_SECONDS)
    adapter = _PushAdapter(_Route(target=target, deadline=deadline), max_body=settings.PARLEY_PUSH_MAX_RESPONSE_BYTES)
    session = _PushSession()
    session.trust_env = False
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    deadline.start()
    try:
        yield Exchange(session, deadline)
    finally:
        deadline.stop()
        session.close()
