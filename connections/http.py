"""The one outbound HTTP client for tenant-supplied URLs.

Guarantees, for every request and every redirect hop:
- only http and https; no credentials in the URL;
- the host is resolved once and every resolved address is checked against
  the blocked networks below (``ipaddress.is_global`` alone is wrong for
  several of them on Python 3.11); IPv4 embedded in IPv6 (mapped, compatible,
  NAT64, 6to4) is checked as IPv4;
- the connection goes to the address that was checked (no second lookup, so
  DNS rebinding cannot swap it), keeping the Host header and the TLS server
  name of the original host;
- at most ``MAX_REDIRECTS`` redirects; Authorization and custom auth headers
  are dropped when a redirect leaves the first request's origin (scheme, host, port;
  an http to https upgrade on the same host keeps them);
- the body is read as a stream and refused past ``max_bytes`` or when it takes
  longer than the read timeout in total;
- retries on connect errors, timeouts, 429 and 5xx with exponential backoff,
  full jitter and ``Retry-After`` within a cap; other 4xx are not retried.

``OUTBOUND_ALLOWED_HOSTS`` (host names, IPs or CIDRs) lets named private
hosts through, for on-premise APIs, the demo and the tests.

Errors never carry header values, so no secret reaches a message or a log.
"""
import ipaddress
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from django.conf import settings

logger = logging.getLogger("connections.http")

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_BACKOFF_SECONDS = 10.0
BACKOFF_BASE_SECONDS = 0.25
USER_AGENT = "integrations-hub/1.0"

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
RETRY_STATUSES = {429, 500, 502, 503, 504}


class OutboundError(Exception):
    """A request that did not produce a usable answer; ``code`` is a check error code."""

    code = "CONNECTION_FAILED"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class UrlNotAllowed(OutboundError):
    """The URL or an address it resolves to is refused; the API answers 400 URL_NOT_ALLOWED."""

    code = "URL_NOT_ALLOWED"


class OutboundTimeout(OutboundError):
    code = "TIMEOUT"


class ResponseTooLarge(OutboundError):
    code = "RESPONSE_TOO_LARGE"


@dataclass
class OutboundResponse:
    status_code: int
    headers: dict
    body: bytes
    url: str
    elapsed_ms: int
    attempts: int = 1
    redirects: list[str] = field(default_factory=list)

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64 or ip in ipaddress.ip_network("::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
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


def _allow_list():
    hosts, networks = set(), []
    for entry in getattr(settings, "OUTBOUND_ALLOWED_HOSTS", []) or []:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.rstrip("."))
    return hosts, networks


def literal_ip(host: str):
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


def resolve_host(host: str, port: int) -> list[str]:
    """All addresses of ``host`` (the one place the tests stub DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str
    path: str  # path + query

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def check_url(url: str) -> Target:
    """Validate ``url`` and pick the address to connect to; raise UrlNotAllowed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlNotAllowed("The URL is malformed.") from None
    if parts.scheme not in ("http", "https"):
        raise UrlNotAllowed(f"Only http and https URLs are allowed, not '{parts.scheme or 'none'}'.")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed("URLs may not carry credentials.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlNotAllowed("The URL has no host.")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    allowed_hosts, allowed_networks = _allow_list()

    literal = literal_ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolve_host(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise OutboundError(f"Could not resolve host '{host}'.", code="CONNECTION_FAILED") from exc
        if not addresses:
            raise OutboundError(f"Host '{host}' has no address.", code="CONNECTION_FAILED")

    if host in allowed_hosts:
        return Target(parts.scheme, host, port, addresses[0], path)
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net for net in allowed_networks):
            continue
        reason = blocked_reason(ip)
        if reason:
            raise UrlNotAllowed(f"Host '{host}' is not allowed: {reason}.")
    return Target(parts.scheme, host, port, addresses[0], path)


POOL_CACHE_SIZE = 256
POOL_MAXSIZE = 64
_pools: "OrderedDict[tuple, urllib3.HTTPConnectionPool]" = OrderedDict()
_pools_lock = threading.Lock()


def _pool(target: Target):
    """A keep-alive pool per checked address, port and TLS name (bounded, least recently used out).

    Pools are keyed by the address that was checked, so a reused connection
    never goes anywhere the checks did not allow.
    """
    key = (target.scheme, target.address, target.port, target.host)
    with _pools_lock:
        pool = _pools.pop(key, None)
        if pool is None:
            if target.scheme == "https":
                context = ssl.create_default_context(cafile=certifi.where())
                pool = urllib3.HTTPSConnectionPool(
                    target.address, port=target.port, retries=False, maxsize=POOL_MAXSIZE, block=False,
                    server_hostname=target.host, assert_hostname=target.host, ssl_context=context,
                )
            else:
                pool = urllib3.HTTPConnectionPool(
                    target.address, port=target.port, retries=False, maxsize=POOL_MAXSIZE, block=False
                )
        _pools[key] = pool
        while len(_pools) > POOL_CACHE_SIZE:
            _pools.popitem(last=False)[1].close()
    return pool


def _read_capped(response, max_bytes: int, read_timeout: float) -> bytes:
    """The body, refused past ``max_bytes`` and past ``read_timeout`` in total.

    ``read1`` returns what one socket read gives, so a server that trickles
    bytes (each read within the socket timeout) still meets the deadline.
    """
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(f"The response is larger than {max_bytes} bytes.")
    deadline = time.monotonic() + read_timeout
    chunks, total = [], 0
    while chunk := response.read1(64 * 1024, decode_content=True):
        total += len(chunk)
        if total > max_bytes:
            raise ResponseTooLarge(f"The response is larger than {max_bytes} bytes.")
        if time.monotonic() > deadline:
            raise OutboundTimeout("The response body took longer than the timeout.")
        chunks.append(chunk)
    return b"".join(chunks)


def _send_once(method, target: Target, headers, body, connect_timeout, read_timeout, max_bytes):
    pool = _pool(target)
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    # A kept-alive connection the server closed meanwhile fails at once; an idempotent
    # request gets one more try on a fresh connection.
    tries = 2 if method in ("GET", "HEAD", "OPTIONS") else 1
    for attempt in range(tries):
        try:
            return _exchange(pool, method, target, headers, body, timeout, max_bytes, read_timeout)
        except urllib3.exceptions.ProtocolError:
            if attempt + 1 < tries:
                continue
            raise OutboundError(f"The connection to '{target.host}' was closed unexpectedly.") from None
        except urllib3.exceptions.NewConnectionError:
            # Checked before timeouts: urllib3 derives it from ConnectTimeoutError.
            raise OutboundError(
                f"Could not connect to '{target.host}' (connection refused or unreachable)."
            ) from None
        except (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise OutboundTimeout(f"Timed out talking to '{target.host}'.") from None
        except urllib3.exceptions.SSLError:
            raise OutboundError(f"TLS handshake with '{target.host}' failed.") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            name = type(exc).__name__
            raise OutboundError(f"Could not connect to '{target.host}' ({name}).") from None


def _exchange(pool, method, target: Target, headers, body, timeout, max_bytes, read_timeout):
    response = pool.urlopen(
        method, target.path, body=body, headers={**headers, "Host": target.host_header}, timeout=timeout,
        redirect=False, retries=False, preload_content=False, assert_same_host=False, release_conn=False,
    )
    complete = False
    try:
        data = _read_capped(response, max_bytes, read_timeout)
        complete = True
    finally:
        if not complete:
            response.close()  # a half-read body leaves the connection unusable: never reuse it
        response.release_conn()
    return response.status, {k.lower(): v for k, v in response.headers.items()}, data


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff_delay(attempt: int, retry_after: float | None = None, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """Full-jitter exponential backoff; a server's Retry-After wins, within ``cap``."""
    if retry_after is not None:
        return min(cap, retry_after)
    return random.uniform(0, min(cap, BACKOFF_BASE_SECONDS * (2 ** attempt)))


def _follow(method, url, headers, body, connect_timeout, read_timeout, max_bytes):
    """One logical attempt: the request and its redirects, each hop checked."""
    redirects = []
    origin = None
    for _ in range(MAX_REDIRECTS + 1):
        target = check_url(url)
        origin = origin or target
        status, response_headers, data = _send_once(
            method, target, headers, body, connect_timeout, read_timeout, max_bytes
        )
        if status in (301, 302, 303, 307, 308) and response_headers.get("location"):
            url = urljoin(url, response_headers["location"])
            redirects.append(url)
            if status == 303 or (status in (301, 302) and method not in ("GET", "HEAD")):
                method, body = "GET", None
            if not _same_origin(origin, url):
                headers = {k: v for k, v in headers.items() if k.lower() in SAFE_TO_FORWARD}
            continue
        return status, response_headers, data, url, redirects
    raise OutboundError(f"More than {MAX_REDIRECTS} redirects.", code="CONNECTION_FAILED")


SAFE_TO_FORWARD = {"accept", "user-agent", "content-type"}
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _clean_headers(headers: dict) -> dict:
    """The defaults overlaid case-insensitively with ``headers``; Host is always ours.

    A name or value that cannot be sent (CR/LF, control characters) is refused
    without quoting the value, which is usually a secret.
    """
    merged = {"user-agent": ("User-Agent", USER_AGENT), "accept": ("Accept", "application/json")}
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise OutboundError("A request header has an invalid name.")
        value = str(value)
        if BAD_HEADER_VALUE.search(value):
            raise OutboundError(f"The request header '{name}' has an invalid value.")
        if name.lower() != "host":
            merged[name.lower()] = (name, value)
    return dict(merged.values())


def _same_origin(origin: Target, url: str) -> bool:
    """Whether auth headers may follow a redirect to ``url``: same scheme, host
    and port as the first request, or the same host moving from http:80 to https:443."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host = (parts.hostname or "").rstrip(".").lower()
    if host != origin.host:
        return False
    if (parts.scheme, port) == (origin.scheme, origin.port):
        return True
    return (origin.scheme, origin.port, parts.scheme, port) == ("http", 80, "https", 443)


def request(
    method: str,
    url: str,
    *,
    headers: dict | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    retries: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sleep: Callable[[float], None] = time.sleep,
) -> OutboundResponse:
    """Send one request through every rule above; see the module docstring.

    Returns the final response, whatever its status; raises OutboundError
    (UrlNotAllowed, OutboundTimeout, ResponseTooLarge) when there is none.
    """
    headers = _clean_headers(headers or {})
    method = method.upper()
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            status, response_headers, data, final_url, redirects = _follow(
                method, url, headers, body, min(timeout, 10.0), timeout, max_bytes
            )
        except (UrlNotAllowed, ResponseTooLarge):
            raise
        except OutboundError as exc:
            if attempt > retries:
                raise
            delay = backoff_delay(attempt - 1)
            logger.info("connections.http.retry attempt=%s reason=%s delay=%.2f", attempt, exc.code, delay)
            sleep(delay)
            continue
        if status in RETRY_STATUSES and attempt <= retries:
            delay = backoff_delay(attempt - 1, retry_after_seconds(response_headers.get("retry-after")))
            logger.info("connections.http.retry attempt=%s status=%s delay=%.2f", attempt, status, delay)
            sleep(delay)
            continue
        return OutboundResponse(
            status_code=status,
            headers=response_headers,
            body=data,
            url=final_url,
            elapsed_ms=int((time.monotonic() - started) * 1000),
            attempts=attempt,
            redirects=redirects,
        )
