"""A real Web Push service on 127.0.0.1, for tests.

It plays both ends a browser would: :meth:`LocalPushService.subscribe` makes a subscription
the way a browser does (a fresh P-256 key pair and a 16-byte auth secret; the endpoint points
here), and the HTTP server receives what Parley POSTs, checks the VAPID signature, and
decrypts the body with the subscription's private key (RFC 8291, aes128gcm). It can be told
to fail: ``respond_with(500, times=2)`` answers the next two pushes with 500, then 201; an
answer may carry headers (a redirect's ``Location``) and a body, or come slowly
(``respond_slowly``). It counts every TCP connection made to it (``connections``), so a test
can prove that Parley never contacted it at all.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


@dataclass
class Subscription:
    """What a browser keeps: the private half stays here, the rest goes to Parley."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    auth: bytes = field(repr=False)

    def as_json(self) -> dict[str, Any]:
        """The browser's ``PushSubscription.toJSON()``."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64url(public_point(self.private_key)),
                                                    "auth": b64url(self.auth)}}


@dataclass(frozen=True)
class Answer:
    """What the service answers to one push: a status, extra headers, a body, and how slowly."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    dribble_seconds: float = 0.0  # spread the header lines over this long, a byte at a time


@dataclass(frozen=True)
class Received:
    token: str
    status: int
    headers: dict[str, str]
    payload: dict[str, Any] | None  # decrypted; None when the push was refused


class LocalPushService:
    def __init__(self, *, vapid_public_key: str, vapid_subject: str) -> None:
        self.vapid_public_key = vapid_public_key
        self.vapid_subject = vapid_subject
        self._subscriptions: dict[str, Subscription] = {}
        self._planned: list[Answer] = []
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.connections = 0  # TCP connections accepted, whether or not a request followed
        self.body_bytes_sent: list[int] = []  # per answer with a body: how much the client took
        self._server = _CountingServer(("127.0.0.1", 0), self._handler(), service=self)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> LocalPushService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- What tests use ------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        token = b64url(os.urandom(12))
        subscription = Subscription(token=token, endpoint=f"{self.origin}/push/{token}",
                                    private_key=ec.generate_private_key(ec.SECP256R1()), auth=os.urandom(16))
        with self._lock:
            self._subscriptions[token] = subscription
        return subscription

    def respond_with(self, status: int, *, times: int = 1, headers: dict[str, str] | None = None,
                     body: bytes = b"") -> None:
        """Answer the next ``times`` pushes with ``status`` (then 201 again)."""
        with self._lock:
            self._planned += [Answer(status, dict(headers or {}), body)] * times

    def respond_slowly(self, seconds: float, *, status: int = 201) -> None:
        """Take the push (it is decrypted and recorded) but dribble the answer's header lines
        over ``seconds``, a byte at a time: a service that keeps the sender waiting."""
        with self._lock:
            self._planned.append(Answer(status, {"X-Padding": "x" * 40}, dribble_seconds=seconds))

    def delivered(self, subscription: Subscription | None = None) -> list[dict[str, Any]]:
        """Decrypted payloads the service accepted (201), oldest first."""
        return [r.payload for r in self.received
                if r.status == 201 and (subscription is None or r.token == subscription.token)]

    def attempts(self) -> list[int]:
        return [r.status for r in self.received]

    # --- The service ---------------------------------------------------------------------------

    def _accept(self, token: str, headers: dict[str, str], body: bytes) -> tuple[Received, Answer]:
        subscription = self._subscriptions.get(token)
        if subscription is None:
            return Received(token, 404, headers, None), Answer(404)
        if not self._vapid_ok(headers.get("authorization", "")):
            return Received(token, 403, headers, None), Answer(403)
        if headers.get("content-encoding") != "aes128gcm":
            return Received(token, 400, headers, None), Answer(400)
        with self._lock:
            answer = self._planned.pop(0) if self._planned else Answer(201)
        if answer.status != 201:
            return Received(token, answer.status, headers, None), answer
        plain = http_ece.decrypt(body, private_key=subscription.private_key, auth_secret=subscription.auth,
                                 version="aes128gcm")
        return Received(token, 201, headers, json.loads(plain)), answer

    def _vapid_ok(self, authorization: str) -> bool:
        """RFC 8292: ``vapid t=<ES256 JWT>,k=<public key>``, signed for this origin, not expired."""
        scheme, _, params = authorization.partition(" ")
        fields = dict(part.split("=", 1) for part in params.split(",") if "=" in part)
        if scheme != "vapid" or fields.get("k") != self.vapid_public_key:
            return False
        try:
            header, claims, signature = fields["t"].split(".")
            raw = unb64url(signature)
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
            key.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                       f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
            claims_ = json.loads(unb64url(claims))
        except (KeyError, ValueError, InvalidSignature):
            return False
        return (claims_.get("aud") == self.origin and claims_.get("sub") == self.vapid_subject
                and claims_.get("exp", 0) > time.time())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                token = self.path.rsplit("/", 1)[-1]
                headers = {key.lower(): value for key, value in self.headers.items()}
                received, answer = service._accept(token, headers, body)
                with service._lock:
                    service.received.append(received)
                # Recorded before answering: when Parley's request returns, the test sees it.
                try:
                    self._answer(answer)
                except OSError:  # the client hung up: it was not waiting for the rest
                    pass

            def _answer(self, answer: Answer) -> None:
                lines = [f"HTTP/1.1 {answer.status} {self.responses.get(answer.status, ('',))[0]}\r\n"]
                lines += [f"{name}: {value}\r\n" for name, value in answer.headers.items()]
                lines.append(f"Content-Length: {len(answer.body)}\r\n\r\n")
                head = "".join(lines).encode("latin-1")
                if answer.dribble_seconds:
                    pause = answer.dribble_seconds / len(head)
                    for byte in head:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(pause)
                else:
                    self.wfile.write(head)
                if answer.body:
                    sent = 0
                    try:
                        for start in range(0, len(answer.body), 65536):
                            self.wfile.write(answer.body[start:start + 65536])
                            sent += len(answer.body[start:start + 65536])
                    finally:
                        with service._lock:
                            service.body_bytes_sent.append(sent)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 service: LocalPushService) -> None:
        self.service = service
        super().__init__(address, handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.service._lock:
            self.service.connections += 1
        return True
