"""Which callback URLs Colsum may POST to: never the machines around it, unless allowed.

A callback URL is chosen by whoever submits a task, and the executor POSTs from inside the
deployment: without this check a task could reach the cloud's metadata service
(169.254.169.254), Redis, or `http://s3:5000/moto-api/reset` on the compose network.
`refusal` judges a URL without DNS (the backend, at submit time); `resolve` looks the host
up once, at delivery, and the executor connects to that very address, so a name that
answers differently the second time (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from colsum.settings import Settings

DEFAULT_PORTS = {"http": 80, "https": 443}


class Refused(Exception):
    """This URL is never delivered to; the message says why, and how to allow it."""


class Unresolved(Exception):
    """The host name does not resolve now; it may later."""


@dataclass(frozen=True)
class Target:
    """Where a delivery goes: the URL's parts, and the one address to connect to."""

    scheme: str
    host: str  # as in the URL (no brackets): the Host header and TLS's server name
    port: int
    target: str  # path and query, for the request line
    address: str  # the resolved IP address

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def refusal(url: str, settings: Settings) -> str | None:
    """Why `url` is refused as a callback URL, judged without resolving its host (submit
    time); None if it may be tried. An internal address behind a host name is only found
    at delivery, by `resolve`."""
    try:
        parts = _parse(url)
        host = parts.hostname or ""
        if not _allowed(host, settings):
            name = host.removesuffix(".")
            if name == "localhost" or name.endswith(".localhost"):
                raise Refused(_internal(host, "a loopback address"))
            _check(_literal(host))
    except Refused as error:
        return str(error)
    return None


def resolve(url: str, settings: Settings) -> Target:
    """Look the host up once and return where to connect; Refused if that is internal."""
    parts = _parse(url)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise Unresolved(f"cannot resolve {host}: {getattr(error, 'strerror', error)}") from None
    if not found:
        raise Unresolved(f"cannot resolve {host}: no address")
    address = str(found[0][4][0]).split("%")[0]
    if not _allowed(host, settings):
        _check(ipaddress.ip_address(address))
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return Target(parts.scheme, host, port, target, address)


def _parse(url: str) -> SplitResult:
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        raise Refused("refused: callback_url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as error:
        raise Refused(f"refused: callback_url is not a valid URL ({error})") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise Refused("refused: callback_url must be an http:// or https:// URL")
    if not parts.hostname:
        raise Refused("refused: callback_url has no host")
    return parts


def _allowed(host: str, settings: Settings) -> bool:
    return settings.webhook_allow_private or host.lower() in settings.webhook_allowed_hosts


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host written as one stands for, in any spelling the resolver takes:
    `127.1`, `0x7f.1`, `2130706433` and `127.0.0.1.` all reach loopback."""
    host = host.split("%")[0].removesuffix(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # the C library's own reading
    except OSError:
        return None


def _check(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> None:
    if address is None:
        return
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    kind = _kind(address)
    if kind is not None:
        raise Refused(_internal(str(address), kind))


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What makes an address internal, or None for a public one."""
    for test, kind in (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "a non-public address"),
    ):
        if test:
            return kind
    return None


def _internal(address: str, kind: str) -> str:
    return (
        f"refused: callback_url resolves to {address}, {kind}; "
        "set WEBHOOK_ALLOW_PRIVATE=true or WEBHOOK_ALLOWED_HOSTS to allow it"
    )
