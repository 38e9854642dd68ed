"""A real Web Push service on 127.0.0.1, for tests.

It plays both ends a browser would: :meth:`LocalPushService.subscribe` makes a subscription
the way a browser does (a fresh P-256 key pair and a 16-byte auth secret; the endpoint points
here), and the HTTP server receives what Parley POSTs, checks the VAPID signature, and
decrypts the body with the subscription's private key (RFC 8291, aes128gcm). It can be told
to fail: ``respond_with(500, times=2)`` answers the next two pushes with 500, then 201.
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
        self._planned: list[int] = []
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
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

    def respond_with(self, status: int, *, times: int = 1) -> None:
        """Answer the next ``times`` pushes with ``status`` (then 201 again)."""
        with self._lock:
            self._planned += [status] * times

    def delivered(self, subscription: Subscription | None = None) -> list[dict[str, Any]]:
        """Decrypted payloads the service accepted (201), oldest first."""
        return [r.payload for r in self.received
                if r.status == 201 and (subscription is None or r.token == subscription.token)]

    def attempts(self) -> list[int]:
        return [r.status for r in self.received]

    # --- The service ---------------------------------------------------------------------------

    def _accept(self, token: str, headers: dict[str, str], body: bytes) -> Received:
        subscription = self._subscriptions.get(token)
        if subscription is None:
            return Received(token, 404, headers, None)
        if not self._vapid_ok(headers.get("authorization", "")):
            return Received(token, 403, headers, None)
        if headers.get("content-encoding") != "aes128gcm":
            return Received(token, 400, headers, None)
        with self._lock:
            status = self._planned.pop(0) if self._planned else 201
        if status != 201:
            return Received(token, status, headers, None)
        plain = http_ece.decrypt(body, private_key=subscription.private_key, auth_secret=subscription.auth,
                                 version="aes128gcm")
        return Received(token, 201, headers, json.loads(plain))

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
                received = service._accept(token, headers, body)
                with service._lock:
                    service.received.append(received)
                # Recorded before answering: when Parley's request returns, the test sees it.
                self.send_response(received.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler
