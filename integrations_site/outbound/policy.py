"""What the outbound client may reach: URL rules and the address policy.

- only http and https; no credentials in the URL; a host that can be sent;
- every address a host resolves to is checked against the blocked networks
  below (``ipaddress.is_global`` alone is wrong for several of them on Python
  3.11); IPv4 embedded in IPv6 (mapped, compatible, NAT64, 6to4) is checked as
  IPv4; legacy IPv4 spellings (``2130706433``, ``0x7f.1``, ``127.1``, octal)
  are read as the address they stand for;
- a host is refused when ANY of its addresses is refused, so a name cannot
  mix a public address with a private one.

``OUTBOUND_ALLOWED_HOSTS`` (host names, IPs or CIDRs) lets named private hosts
through, for on-premise APIs, the demo and the tests. An allowed name allows
whatever it resolves to; an allowed network allows those addresses under any
name. The transport applies ``check_addresses`` to every lookup it makes.
"""
import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

from django.conf import settings

from .errors import OutboundError, UrlNotAllowed

IPV4_BLOCKED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    )
]
IPV6_BLOCKED = [
    ipaddress.ip_network(n)
    for n in (
        "::/128", "::1/128", "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
        "2001::/23", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
]
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
# Spaces, control and non-ASCII bytes would break the request line: percent-encoded, as browsers do.
UNSAFE_TARGET_BYTE = re.compile(rb"[^\x21-\x7e]")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64 or ip in IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be reached, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None and blocked_reason(inner):
            return f"{ip} embeds the non-public address {inner}"
        for net in IPV6_BLOCKED:
            if ip in net:
                return f"{ip} is in the non-public range {net}"
    else:
        for net in IPV4_BLOCKED:
            if ip in net:
                return f"{ip} is in the non-public range {net}"
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local or not ip.is_global:
        return f"{ip} is not a public address"
    return None


def allow_list() -> tuple:
    """The entries of ``OUTBOUND_ALLOWED_HOSTS``, read on every call (tests change it)."""
    return tuple(getattr(settings, "OUTBOUND_ALLOWED_HOSTS", ()) or ())


@functools.lru_cache(maxsize=8)
def parsed_allow_list(entries: tuple) -> tuple[frozenset, tuple]:
    """(host names, networks) of the allow-list ``entries``."""
    hosts, networks = set(), []
    for entry in entries:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.rstrip("."))
    return frozenset(hosts), tuple(networks)


@functools.lru_cache(maxsize=4096)
def literal_ip(host: str) -> IPAddress | None:
    """The address a literal host stands for, including legacy IPv4 spellings
    (``2130706433``, ``0x7f.1``, ``127.1``, octal), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


class Target(NamedTuple):
    """One hop's destination: the host as sent (lower case, IDNA), and the addresses that passed the policy."""

    scheme: str
    host: str
    port: int
    path: str  # path + query, percent-encoded as it goes on the request line
    addresses: tuple[str, ...] = ()
    literal: str | None = None  # the address a literal host stands for (``0x7f.1`` is 127.0.0.1)

    @property
    def address(self) -> str:
        """The first checked address (the one the old client pinned)."""
        return self.addresses[0]

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


@functools.lru_cache(maxsize=4096)
def parse_url(url: str) -> Target:
    """The URL's scheme, host, port and request target, without resolving; raise UrlNotAllowed.
    (A pure function of the URL: kept for the URLs checked again and again.)"""
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        raise UrlNotAllowed("The URL is malformed.") from None
    if parts.scheme not in ("http", "https"):
        raise UrlNotAllowed(f"Only http and https URLs are allowed, not '{parts.scheme or 'none'}'.")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed("URLs may not carry credentials.")
    host = (hostname or "").rstrip(".").lower()
    if not host:
        raise UrlNotAllowed("The URL has no host.")
    literal = literal_ip(host)
    if literal is None:
        host = _ascii_host(host)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    path = UNSAFE_TARGET_BYTE.sub(lambda m: b"%%%02X" % m.group()[0], path.encode("utf-8")).decode("ascii")
    port = port or (443 if parts.scheme == "https" else 80)
    return Target(parts.scheme, host, port, path, (), None if literal is None else str(literal))


def _ascii_host(host: str) -> str:
    try:
        ascii_host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host
    except UnicodeError:
        raise UrlNotAllowed("The URL's host cannot be sent.") from None
    if not HOST_NAME.match(ascii_host):
        raise UrlNotAllowed("The URL's host cannot be sent.")
    return ascii_host


def check_addresses(target: Target, addresses: Iterable[str]) -> Target:
    """``target`` with ``addresses``, each checked; raise UrlNotAllowed when any is refused."""
    addresses = tuple(dict.fromkeys(addresses))
    if not addresses:
        raise OutboundError(f"Host '{target.host}' has no address.")
    entries = allow_list()
    if target.host not in parsed_allow_list(entries)[0]:
        for address in addresses:
            reason = address_refusal(address, entries)
            if reason:
                raise UrlNotAllowed(f"Host '{target.host}' is not allowed: {reason}.")
    return Target(target.scheme, target.host, target.port, target.path, addresses, target.literal)


@functools.lru_cache(maxsize=4096)
def address_refusal(address: str, allow_entries: tuple = ()) -> str | None:
    """Why ``address`` is refused unless the allow-list ``allow_entries`` names its network, or None.
    A pure function of its arguments (the blocked ranges are constants), so its answers are kept;
    every address of every lookup still goes through it."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if any(ip in net for net in parsed_allow_list(allow_entries)[1]):
        return None
    return blocked_reason(ip)


def resolve_host(host: str, port: int) -> list[str]:
    """All addresses of ``host`` from the system resolver (``check_url``'s default lookup)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_url(url: str, resolve: Callable[[str, int], list[str]] = resolve_host) -> Target:
    """Validate ``url`` and check every address it stands for; raise UrlNotAllowed.

    For synchronous callers that vet a URL before storing it; the client does
    the same per hop through the transport's resolver. A literal address is
    never sent to ``resolve``.
    """
    target = parse_url(url)
    if target.literal is not None:
        return check_addresses(target, [target.literal])
    try:
        addresses = resolve(target.host, target.port)
    except (OSError, UnicodeError) as exc:
        raise OutboundError(f"Could not resolve host '{target.host}'.") from exc
    return check_addresses(target, addresses)


def same_origin(origin: Target, url: str) -> bool:
    """Whether auth headers may follow a redirect to ``url``: same scheme, host and
    port as the first request, or the same host moving from http:80 to https:443."""
    try:
        target = parse_url(url)
    except UrlNotAllowed:
        return False
    if target.host != origin.host:
        return False
    if (target.scheme, target.port) == (origin.scheme, origin.port):
        return True
    return (origin.scheme, origin.port, target.scheme, target.port) == ("http", 80, "https", 443)
