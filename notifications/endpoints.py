"""Where a push may go (docs/security.md, "Push endpoints").

A subscription's endpoint is the one URL a client makes the server POST to, so it is untrusted
input, checked twice: when it is registered (:func:`check_push_endpoint`: a 400 with field
errors) and before every attempt (:func:`check_push_target`), because a name that resolved to a
public address at registration may resolve to an internal one later (DNS rebinding). The
attempt then connects to the very addresses this check approved (notifications.transport),
never to a fresh answer of the resolver.

The rules: https on the standard port, no user name or password in the URL, a host on
``PARLEY_PUSH_ALLOWED_HOSTS`` (the browsers' push services by default), and every address the
name resolves to public. ``PARLEY_PUSH_INSECURE_TEST_ORIGINS`` exempts the test suite's local
push service (plain http on 127.0.0.1) and is empty, and not settable from the environment,
everywhere else.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from messaging.errors import Invalid

HTTPS_PORT = 443
# RFC 6052's well-known NAT64 prefix: the last 32 bits are an IPv4 address a NAT64 gateway reaches.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

NOT_HTTPS = "Must be an https URL."
HAS_USERINFO = "Must not carry a user name or password."
NOT_HTTPS_PORT = "Must use the standard https port."
NOT_ALLOWED = "Must be the endpoint of a supported push service."
UNRESOLVED = "Must be a name that resolves."
NOT_PUBLIC = "Must resolve to public internet addresses only."


class EndpointRefused(Exception):
    """The endpoint breaks a rule; ``str()`` says which, in our own words."""


class EndpointUnresolved(Exception):
    """The name did not resolve (now): a network error, worth another try later."""


@dataclass(frozen=True)
class PushTarget:
    """A checked endpoint: talk to ``host`` (TLS name, Host header) at these addresses only."""

    host: str
    port: int
    addresses: tuple[str, ...]


def host_allowed(host: str) -> bool:
    """Whether ``host`` is on ``PARLEY_PUSH_ALLOWED_HOSTS``: an exact name, ``*.suffix`` (any
    name under it, not the suffix itself) or ``*`` (any host: then only the address rule holds)."""
    host = _normal(host)
    for pattern in map(_normal, settings.PARLEY_PUSH_ALLOWED_HOSTS):
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and host[: -len(pattern) + 1].strip("."):
            return True
    return False


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally routable unicast address, also for IPv4 carried inside IPv6 (mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


def check_push_endpoint(endpoint: str) -> str:
    """Registration: the endpoint, or :class:`Invalid` with the rule it breaks as a field error."""
    try:
        _checked(endpoint)
    except EndpointRefused as refused:
        raise Invalid("this push endpoint is refused", fields={"endpoint": [str(refused)]}) from None
    except EndpointUnresolved:
        raise Invalid("this push endpoint is refused", fields={"endpoint": [UNRESOLVED]}) from None
    return endpoint


def check_push_target(endpoint: str) -> PushTarget:
    """An attempt: resolve once and approve the addresses to connect to.

    Raises :class:`EndpointRefused` (never contact it) or :class:`EndpointUnresolved`.
    """
    return _checked(endpoint)


def _checked(endpoint: str) -> PushTarget:
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise EndpointRefused(NOT_HTTPS) from None
    host = parts.hostname or ""
    exempt = _origin(parts.scheme, host, port) in {_origin_of(o) for o in settings.PARLEY_PUSH_INSECURE_TEST_ORIGINS}
    if not exempt:
        if parts.scheme != "https":
            raise EndpointRefused(NOT_HTTPS)
        if parts.username is not None or parts.password is not None:
            raise EndpointRefused(HAS_USERINFO)
        if port not in (None, HTTPS_PORT):
            raise EndpointRefused(NOT_HTTPS_PORT)
        if not host or not host_allowed(host):
            raise EndpointRefused(NOT_ALLOWED)
    port = port or HTTPS_PORT
    addresses = _resolve(host, port)
    if not exempt and not all(is_public(address) for address in addresses):
        # All of them: a name that answers with a public and a private address is rebinding bait.
        raise EndpointRefused(NOT_PUBLIC)
    return PushTarget(host=host, port=port, addresses=tuple(str(address) for address in addresses))


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise EndpointUnresolved(host) from None
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for family, _, _, _, sockaddr in found:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        # An IPv6 scope ("fe80::1%eth0") only ever comes with a link-local address.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise EndpointUnresolved(host)
    return addresses


def _normal(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _origin(scheme: str, host: str, port: int | None) -> str:
    return f"{scheme.lower()}://{_normal(host)}:{port or (HTTPS_PORT if scheme == 'https' else 80)}"


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return _origin(parts.scheme, parts.hostname or "", parts.port)
