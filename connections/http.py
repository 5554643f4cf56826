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

``request`` sends one request; ``request_many`` sends many at once on one
event loop (scheduled health checks), optionally under one limit for the
whole process. Connections are kept alive per checked address.

Errors never carry header values, so no secret reaches a message or a log.
"""
import asyncio
import functools
import ipaddress
import logging
import os
import random
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import certifi
from django.conf import settings

from integrations_site import bounds

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
    started_at: float | None = None  # set by arequest: when the request began (epoch seconds)
    elapsed_ms: int | None = None

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
    started_at: float = 0.0  # epoch seconds

    def json(self):
        """The body as JSON, bounded (integrations_site.bounds): ValueError when it is not JSON we keep."""
        return bounds.loads(self.body)


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
    return _parsed_allow_list(tuple(getattr(settings, "OUTBOUND_ALLOWED_HOSTS", []) or []))


@functools.lru_cache(maxsize=8)
def _parsed_allow_list(entries: tuple) -> tuple[set, list]:
    hosts, networks = set(), []
    for entry in entries:
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


# --- transport: HTTP/1.1 over asyncio streams ------------------------------------------
#
# Each thread runs its requests on its own event loop, kept between calls because it holds
# that thread's keep-alive connections. ``request`` sends one request from synchronous code;
# ``request_many`` sends many concurrently on the same loop (scheduled health checks), at a
# fraction of the CPU a thread per request costs. The loop only ever runs the network part:
# callers do their database work before and after, never inside it.

POOL_CACHE_SIZE = 256  # checked addresses with idle connections kept, per thread
POOL_MAXSIZE = 64  # idle connections kept per checked address
POOL_IDLE_SECONDS = 30.0  # an idle connection older than this is closed rather than reused
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
READ_SIZE = 64 * 1024
UNSAFE_TARGET_BYTE = re.compile(rb"[^\x21-\x7e]")

_local = threading.local()
_tls_contexts: dict[str, ssl.SSLContext] = {}
_tls_lock = threading.Lock()


def run(coro):
    """Run ``coro`` to completion on this thread's event loop (made on first use)."""
    runner = getattr(_local, "runner", None)
    if runner is None:
        runner = _local.runner = asyncio.Runner()
    return runner.run(coro)


class _Closed(Exception):
    """The connection closed before any byte of the answer: a kept-alive connection the server dropped."""


def _idle_pools() -> OrderedDict:
    pools = getattr(_local, "pools", None)
    if pools is None:
        pools = _local.pools = OrderedDict()
    return pools


def _pool_key(target: Target) -> tuple:
    # Keyed by the address that was checked, so a reused connection never goes anywhere the checks did not allow.
    return (target.scheme, target.address, target.port, target.host)


def _idle_connection(target: Target):
    """A kept-alive connection to ``target`` that can carry a request, or None."""
    idle = _idle_pools().get(_pool_key(target))
    now = time.monotonic()
    while idle:
        reader, writer, since = idle.pop()
        if now - since > POOL_IDLE_SECONDS or _dropped(reader, writer):
            writer.transport.abort()
            continue
        return reader, writer
    return None


def _dropped(reader, writer) -> bool:
    """Whether an idle connection was closed by the server or holds bytes nobody asked for (a
    408 before closing, say): either would be read as the next request's answer. Such bytes wait
    in the socket, or in the stream's buffer when the loop ran meanwhile."""
    if writer.is_closing() or reader.at_eof() or len(getattr(reader, "_buffer", b"")):
        return True
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _keep(target: Target, reader, writer) -> None:
    pools = _idle_pools()
    key = _pool_key(target)
    idle = pools.pop(key, None) or []
    if len(idle) < POOL_MAXSIZE:
        idle.append((reader, writer, time.monotonic()))
    else:
        writer.transport.abort()
    pools[key] = idle
    while len(pools) > POOL_CACHE_SIZE:
        for _, old_writer, _ in pools.popitem(last=False)[1]:
            old_writer.transport.abort()


def _tls_context() -> ssl.SSLContext:
    cafile = certifi.where()
    with _tls_lock:
        context = _tls_contexts.get(cafile)
        if context is None:
            context = _tls_contexts[cafile] = ssl.create_default_context(cafile=cafile)
    return context


async def _connect(target: Target, connect_timeout: float):
    tls = target.scheme == "https"
    try:
        async with asyncio.timeout(connect_timeout):
            return await asyncio.open_connection(
                target.address, target.port, limit=MAX_HEADER_BYTES,
                ssl=_tls_context() if tls else None, server_hostname=target.host if tls else None,
            )
    except TimeoutError:
        raise OutboundTimeout(f"Timed out connecting to '{target.host}'.") from None
    except ssl.SSLError:
        raise OutboundError(f"TLS handshake with '{target.host}' failed.") from None
    except (OSError, ValueError):
        raise OutboundError(f"Could not connect to '{target.host}' (connection refused or unreachable).") from None


def _ascii_host(target: Target) -> bytes:
    try:
        return target.host_header.encode("ascii")
    except UnicodeEncodeError:
        try:
            return target.host_header.encode("idna")
        except UnicodeError:
            raise UrlNotAllowed("The URL's host cannot be sent.") from None


def _header_bytes(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _request_head(method: str, target: Target, headers: dict, body: bytes | None) -> bytes:
    # Spaces, control and non-ASCII bytes would break the request line: percent-encoded, as browsers do.
    path = UNSAFE_TARGET_BYTE.sub(lambda m: b"%%%02X" % m.group()[0], target.path.encode("utf-8"))
    lines = [b"%s %s HTTP/1.1" % (method.encode("ascii"), path), b"Host: " + _ascii_host(target)]
    for name, value in headers.items():
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            lines.append(name.encode("ascii") + b": " + _header_bytes(value))
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: %d" % len(body or b""))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _parse_head(head: bytes) -> tuple[int, bool, dict]:
    """(status, HTTP/1.1 or later, lower-cased headers) of a response head."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise OutboundError("The server sent a malformed answer.")
    if len(lines) - 1 > MAX_HEADERS:
        raise OutboundError("The answer has too many headers.")
    headers, last = {}, None
    for line in lines[1:]:
        text = line.decode("latin-1")
        if text[:1] in (" ", "\t") and last is not None:  # obsolete line folding
            headers[last] += " " + text.strip()
            continue
        name, sep, value = text.partition(":")
        if not sep or not name or name != name.strip():
            raise OutboundError("The server sent a malformed answer.")
        last = name.lower()
        headers[last] = f"{headers[last]}, {value.strip()}" if last in headers else value.strip()
    return int(parts[1]), parts[0] != b"HTTP/1.0", headers


class _Body:
    """Collects a body, decoding gzip/deflate, refused past ``max_bytes`` decoded."""

    def __init__(self, encoding: str, max_bytes: int):
        self.max_bytes, self.total, self.chunks = max_bytes, 0, []
        encoding = encoding.strip().lower()
        self.decoder = (
            zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip")
            else zlib.decompressobj() if encoding == "deflate" else None
        )
        # "deflate" is zlib-wrapped or, from some servers, raw: its first two bytes tell which.
        self.deflate_head = b"" if encoding == "deflate" else None

    def add(self, data: bytes) -> None:
        if self.decoder is None:
            return self._keep(data)
        try:
            if self.deflate_head is not None:
                self.deflate_head += data
                try:
                    self._decode(data)
                except zlib.error:  # not a zlib header: raw deflate, from the first byte again
                    self.decoder, data = zlib.decompressobj(-zlib.MAX_WBITS), self.deflate_head
                    self.deflate_head, self.total, self.chunks = None, 0, []
                    self._decode(data)
                    return
                if len(self.deflate_head) >= 2:
                    self.deflate_head = None
                return
            self._decode(data)
        except zlib.error:
            raise OutboundError("The response body could not be decoded.") from None

    def _decode(self, data: bytes) -> None:
        while data:
            self._keep(self.decoder.decompress(data, self.max_bytes + 1 - self.total))
            data = self.decoder.unconsumed_tail

    def _keep(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.max_bytes:
            raise ResponseTooLarge(f"The response is larger than {self.max_bytes} bytes.")
        self.chunks.append(data)

    def value(self) -> bytes:
        return b"".join(self.chunks)


async def _read_body(reader, headers: dict, max_bytes: int) -> tuple[bytes, bool]:
    """The body and whether the connection may be reused (the body was framed)."""
    body = _Body(headers.get("content-encoding", ""), max_bytes)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = await reader.readline()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise OutboundError("The server sent a malformed chunked body.") from None
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return body.value(), True
            while size:
                piece = await reader.readexactly(min(size, READ_SIZE))
                body.add(piece)
                size -= len(piece)
            await reader.readexactly(2)
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise OutboundError("The server sent a malformed Content-Length.")
        remaining = int(declared)
        if remaining > max_bytes:
            raise ResponseTooLarge(f"The response is larger than {max_bytes} bytes.")
        while remaining:
            piece = await reader.readexactly(min(remaining, READ_SIZE))
            body.add(piece)
            remaining -= len(piece)
        return body.value(), True
    while piece := await reader.read(READ_SIZE):  # delimited by the connection's close
        body.add(piece)
    return body.value(), False


async def _exchange(reader, writer, method, target: Target, headers, body, read_timeout, max_bytes):
    """Send one request on a connection and read its answer: (status, headers, body, reusable)."""
    writer.write(_request_head(method, target, headers, body) + (body or b""))
    async with asyncio.timeout(read_timeout):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Closed() from None
            raise
        status, persistent, response_headers = _parse_head(head)
        while 100 <= status < 200 and status != 101:  # interim answers
            status, persistent, response_headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
    if method == "HEAD" or status in (204, 304):
        data, framed = b"", True
    else:
        # The whole body within the read timeout: a server trickling bytes cannot hold a check open.
        async with asyncio.timeout(read_timeout):
            data, framed = await _read_body(reader, response_headers, max_bytes)
    tokens = {t.strip().lower() for t in response_headers.get("connection", "").split(",")}
    return status, response_headers, data, framed and persistent and "close" not in tokens


async def _send_once(method, target: Target, headers, body, connect_timeout, read_timeout, max_bytes):
    # A kept-alive connection the server closed meanwhile fails at once; an idempotent
    # request gets one more try on a fresh connection.
    idempotent = method in ("GET", "HEAD", "OPTIONS")
    while True:
        connection = _idle_connection(target)
        reused = connection is not None
        reader, writer = connection or await _connect(target, connect_timeout)
        try:
            status, response_headers, data, reusable = await _exchange(
                reader, writer, method, target, headers, body, read_timeout, max_bytes
            )
        except BaseException as exc:
            writer.transport.abort()
            await asyncio.sleep(0)  # let the loop release the socket now
            if isinstance(exc, (_Closed, ConnectionError)) and reused and idempotent:
                continue
            raise _outbound_error(exc, target) from None
        if reusable:
            _keep(target, reader, writer)
        else:
            writer.transport.abort()
        return status, response_headers, data


def _outbound_error(exc: BaseException, target: Target) -> BaseException:
    """The OutboundError a transport failure stands for (header values never enter the message)."""
    if isinstance(exc, OutboundError | asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        return exc
    if isinstance(exc, TimeoutError):
        return OutboundTimeout(f"Timed out talking to '{target.host}'.")
    if isinstance(exc, _Closed | asyncio.IncompleteReadError | ConnectionError):
        return OutboundError(f"The connection to '{target.host}' was closed unexpectedly.")
    if isinstance(exc, asyncio.LimitOverrunError | ValueError):  # a head or chunk line past the limit
        return OutboundError("The server sent a malformed answer.")
    if isinstance(exc, ssl.SSLError):
        return OutboundError(f"TLS with '{target.host}' failed.")
    return OutboundError(f"Could not talk to '{target.host}' ({type(exc).__name__}).")


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


async def _checked(url: str) -> Target:
    """``check_url``; a name is resolved off the event loop (a literal address needs no lookup)."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        host = ""
    if not host or literal_ip(host) is not None:
        return check_url(url)
    return await asyncio.get_running_loop().run_in_executor(None, check_url, url)


async def _follow(method, url, headers, body, connect_timeout, read_timeout, max_bytes):
    """One logical attempt: the request and its redirects, each hop checked."""
    redirects = []
    origin = None
    for _ in range(MAX_REDIRECTS + 1):
        target = await _checked(url)
        origin = origin or target
        status, response_headers, data = await _send_once(
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


def request(method: str, url: str, **options) -> OutboundResponse:
    """Send one request from synchronous code; ``options`` and the answer are those of ``arequest``."""
    return run(arequest(method, url, **options))


def request_many(calls: list[dict], *, concurrency: int, process_wide: bool = False) -> list:
    """Several requests at once, at most ``concurrency`` in flight.

    ``calls`` are keyword arguments of ``request``; the answer is, in the same
    order, each call's OutboundResponse or the OutboundError it raised.
    With ``process_wide`` the calls go to one event loop shared by every
    thread of the process, and ``concurrency`` bounds the requests in flight
    for all of them together (scheduled health checks: while one task writes
    its results, the others keep the process's probes busy).
    """
    if not calls:
        return []

    async def send_all(gate: asyncio.Semaphore):
        async def send(call):
            async with gate:
                try:
                    return await arequest(**call)
                except OutboundError as exc:
                    return exc

        return await asyncio.gather(*(send(call) for call in calls))

    if not process_wide:
        return run(send_all(asyncio.Semaphore(max(1, concurrency))))
    loop, gates = _process_loop()

    async def send_all_shared():
        gate = gates.setdefault(concurrency, asyncio.Semaphore(max(1, concurrency)))
        return await send_all(gate)

    return asyncio.run_coroutine_threadsafe(send_all_shared(), loop).result()


_process = {"pid": None, "loop": None, "gates": {}}
_process_lock = threading.Lock()


def _process_loop() -> tuple[asyncio.AbstractEventLoop, dict]:
    """This process's shared event loop (a daemon thread, made again in a forked child) and its gates."""
    with _process_lock:
        if _process["pid"] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="outbound-http", daemon=True).start()
            _process.update(pid=os.getpid(), loop=loop, gates={})
        return _process["loop"], _process["gates"]


async def arequest(
    method: str,
    url: str,
    *,
    headers: dict | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    retries: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sleep: Callable[[float], None] | None = None,
) -> OutboundResponse:
    """Send one request through every rule above; see the module docstring.

    Returns the final response, whatever its status; raises OutboundError
    (UrlNotAllowed, OutboundTimeout, ResponseTooLarge) when there is none,
    carrying ``started_at`` (epoch seconds) and ``elapsed_ms`` like a response.
    ``sleep`` (tests) replaces the wait between retries.
    """
    started_at, started = time.time(), time.monotonic()
    try:
        headers = _clean_headers(headers or {})
        method = method.upper()
        if not HEADER_NAME.match(method):
            raise OutboundError("The request method is invalid.")
        return await _attempts(method, url, headers, body, timeout, retries, max_bytes, sleep, started)
    except OutboundError as exc:
        exc.started_at, exc.elapsed_ms = started_at, int((time.monotonic() - started) * 1000)
        raise


async def _attempts(method, url, headers, body, timeout, retries, max_bytes, sleep, started) -> OutboundResponse:
    attempt = 0
    while True:
        attempt += 1
        try:
            status, response_headers, data, final_url, redirects = await _follow(
                method, url, headers, body, min(timeout, 10.0), timeout, max_bytes
            )
        except (UrlNotAllowed, ResponseTooLarge):
            raise
        except OutboundError as exc:
            if attempt > retries:
                raise
            delay = backoff_delay(attempt - 1)
            logger.info("connections.http.retry attempt=%s reason=%s delay=%.2f", attempt, exc.code, delay)
            await _pause(delay, sleep)
            continue
        if status in RETRY_STATUSES and attempt <= retries:
            delay = backoff_delay(attempt - 1, retry_after_seconds(response_headers.get("retry-after")))
            logger.info("connections.http.retry attempt=%s status=%s delay=%.2f", attempt, status, delay)
            await _pause(delay, sleep)
            continue
        return OutboundResponse(
            status_code=status,
            headers=response_headers,
            body=data,
            url=final_url,
            elapsed_ms=int((time.monotonic() - started) * 1000),
            attempts=attempt,
            redirects=redirects,
            started_at=time.time() - (time.monotonic() - started),
        )


async def _pause(delay: float, sleep: Callable[[float], None] | None) -> None:
    if sleep is None:
        await asyncio.sleep(delay)
    else:
        sleep(delay)
