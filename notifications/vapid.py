"""The VAPID key pair that signs every push (RFC 8292; docs/notifications.md, "VAPID keys").

Configured keys (``PARLEY_VAPID_PRIVATE_KEY``, and the public key, derived from the private one
if not given) always win. Without them, and with ``PARLEY_VAPID_AUTOGENERATE`` on (the
default), a pair is generated the first time one is needed and stored in the database
(:class:`~notifications.models.VapidKeyPair`), so every process of the deployment (web,
gateways, workers) signs with the same pair, and it outlives restarts: browsers bind their
subscriptions to the public key, so it must not change. Each process remembers the pair once
read (the push path asks on every stored message).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings

from .models import VapidKeyPair


@dataclass(frozen=True)
class VapidKeys:
    public: str  # base64url of the uncompressed P-256 point: the browser's applicationServerKey
    private: str  # base64url of the raw 32-byte scalar


_stored: VapidKeys | None = None  # the pair read from (or written to) the database, per process


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_of(key: ec.EllipticCurvePrivateKey) -> str:
    return _b64url(key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint))


def generate_vapid_keys() -> VapidKeys:
    key = ec.generate_private_key(ec.SECP256R1())
    return VapidKeys(public=_public_of(key), private=_b64url(key.private_numbers().private_value.to_bytes(32, "big")))


def public_key_of(private: str) -> str:
    scalar = int.from_bytes(base64.urlsafe_b64decode(private + "=" * (-len(private) % 4)), "big")
    return _public_of(ec.derive_private_key(scalar, ec.SECP256R1()))


def current() -> VapidKeys | None:
    """The pair to sign pushes with, or None: pushes are off (no keys and no autogeneration,
    or a public key configured without its private key: a pair generated here would not
    match what browsers were given)."""
    if settings.PARLEY_VAPID_PRIVATE_KEY:
        private = settings.PARLEY_VAPID_PRIVATE_KEY
        return VapidKeys(public=settings.PARLEY_VAPID_PUBLIC_KEY or public_key_of(private), private=private)
    if settings.PARLEY_VAPID_PUBLIC_KEY or not settings.PARLEY_VAPID_AUTOGENERATE:
        return None
    return stored()


def stored() -> VapidKeys:
    """The deployment's generated pair: read once per process, generated once per database
    (two processes racing to generate it store one; the other reads it)."""
    global _stored
    if _stored is None:
        fresh = generate_vapid_keys()
        row, _created = VapidKeyPair.objects.get_or_create(
            pk=VapidKeyPair.THE_ONE, defaults={"public_key": fresh.public, "private_key": fresh.private})
        _stored = VapidKeys(public=row.public_key, private=row.private_key)
    return _stored


def forget_stored() -> None:
    """Read the stored pair again next time (tests; or after an operator replaced the row)."""
    global _stored
    _stored = None


def public_key() -> str:
    """What the browser subscribes with ("" when there is none)."""
    keys = current()
    return keys.public if keys else settings.PARLEY_VAPID_PUBLIC_KEY
