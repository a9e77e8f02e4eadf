"""Where a webhook may go, and the one POST that goes there.

A subscriber chooses the URL, so the scheduler must not become a way to reach what only it can reach (its
database, Redis, a cloud metadata endpoint). Two checks, both from operator settings:

- the host must be on `SCHEDULER_NOTIFY_WEBHOOK_HOSTS` (exact names, `*.example.com` for subdomains, `*`
  for any host);
- every address the host resolves to must be public (`ipaddress.is_global`: no loopback, private,
  link-local, CGNAT, reserved), unless it lies in `SCHEDULER_NOTIFY_ALLOWED_NETWORKS` (CIDRs the operator
  allows explicitly, e.g. `127.0.0.1/32` for a local receiver).

They run when a subscription is saved (a 400 naming `url`) and again at every send: the name is resolved,
every address checked, and the connection made to a checked address (the host stays in the Host header and
in TLS's SNI and certificate check), so a name that resolved to a public address at subscription time and
to 127.0.0.1 now (DNS rebinding) is refused, and cannot be re-resolved between the check and the connect.
Redirects are not followed and environment proxies not used, for the same reason (as in the HTTP launcher).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: An answer is read up to this many bytes (kept in the log as the error when it is not a success).
MAX_ANSWER_BYTES = 4096
USER_AGENT = "workflow-scheduler-notifications/1"


class AddressRefused(ValueError):
    """The URL may not be called: its message says why and is shown to the subscriber."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


def host_allowed(host: str) -> bool:
    host = host.lower().rstrip(".")
    for entry in settings.SCHEDULER_NOTIFY_WEBHOOK_HOSTS:
        entry = entry.lower().strip().rstrip(".")
        if entry == "*" or entry == host:
            return True
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
    return False


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(cidr.strip(), strict=False)
        for cidr in settings.SCHEDULER_NOTIFY_ALLOWED_NETWORKS
    ]


def address_allowed(address: IPAddress) -> bool:
    """Public, or in a network the operator allows. An IPv4-mapped IPv6 address is judged as its IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in _allowed_networks() if network.version == address.version):
        return True
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"{host} does not resolve ({exc})") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise AddressRefused(f"{host} does not resolve")
    return found


def check_url(url: str) -> tuple[str, int, list[IPAddress]]:
    """Raise `AddressRefused` unless `url` may be called now; return its host, port and checked addresses."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"not a valid URL ({exc})") from None
    if parts.scheme not in {"http", "https"}:
        raise AddressRefused("must be an http or https URL")
    if parts.username or parts.password:
        raise AddressRefused("must not carry credentials (the signature authenticates the request)")
    host = parts.hostname or ""
    if not host:
        raise AddressRefused("must name a host")
    if not host_allowed(host):
        raise AddressRefused(
            f"{host} is not on the operator's webhook allow-list (SCHEDULER_NOTIFY_WEBHOOK_HOSTS)"
        )
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port)
    for address in addresses:
        if not address_allowed(address):
            raise AddressRefused(
                f"{host} resolves to {address}, a private, loopback, link-local or reserved address "
                "(the operator may allow it in SCHEDULER_NOTIFY_ALLOWED_NETWORKS)"
            )
    return host, port, addresses


def _pin(connection: http.client.HTTPConnection, address: IPAddress) -> None:
    """Connect to `address`, a checked one, whatever the name resolves to by the time the socket opens.
    `http.client` opens its socket through this attribute (HTTPS then wraps it with the host as SNI)."""

    def create_connection(target: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        return socket.create_connection((str(address), target[1]), *args, **kwargs)

    connection._create_connection = create_connection  # type: ignore[attr-defined]


def _connect(
    scheme: str, host: str, port: int, addresses: list[IPAddress], *, timeout: float
) -> http.client.HTTPConnection:
    """A connection to the first checked address that answers (a name may resolve to an IPv6 address this
    host cannot reach before an IPv4 one it can)."""
    error: OSError | None = None
    for address in addresses:
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        _pin(connection, address)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            error = exc
            continue
        return connection
    raise error or OSError(f"{host} has no address to connect to")


def post(url: str, body: bytes, *, headers: Mapping[str, str], timeout: float) -> Answer:
    """POST `body` to `url` after checking it (see the module's docstring). Raises `AddressRefused` for a
    URL that may not be called, `OSError` / `http.client.HTTPException` when the call itself fails."""
    host, port, addresses = check_url(url)
    parts = urlsplit(url)
    connection = _connect(parts.scheme, host, port, addresses, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            target,
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        response = connection.getresponse()
        text = response.read(MAX_ANSWER_BYTES).decode("utf-8", "replace")
        return Answer(status=response.status, body=text)
    finally:
        connection.close()
