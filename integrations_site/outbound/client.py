"""The one outbound HTTP client for tenant-supplied URLs: retries, redirects, bodies, auth headers.

For every request and every redirect hop:
- the policy (``policy``) checks the URL and every address its host resolves
  to, and the transport connects only to those addresses;
- one deadline: ``timeout`` is the whole budget, connect, headers, body,
  every redirect and every retry with its backoff; past it, OutboundTimeout;
- at most ``MAX_REDIRECTS`` redirects, or none with ``follow_redirects=False``
  (the 3xx comes back as it is). A redirect from https to http is refused, and
  so is a 307/308 that would carry a request body to another origin; auth and
  custom headers are dropped once a redirect leaves the first request's origin
  (scheme, host, port; an http to https upgrade on the same host keeps them);
- the body is read as it comes and refused past ``max_bytes``, as sent or once
  decoded (gzip, deflate); a compressed body cut short is an error;
- retries on connect errors, dropped connections, 429 and 5xx, with
  exponential backoff, full jitter and ``Retry-After``, only for idempotent
  methods unless the caller passes ``retry_unsafe=True``; other 4xx are not
  retried.

``request`` sends one request from synchronous code; ``request_many`` sends
many at once on one event loop (scheduled health checks), optionally under one
limit for the whole process; ``arequest`` is the coroutine behind both.
Errors never carry header values, so no secret reaches a message or a log.
"""
import asyncio
import logging
import random
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

from integrations_site import bounds

from . import policy, transport
from .errors import OutboundError, OutboundTimeout, ResponseTooLarge, UrlNotAllowed

logger = logging.getLogger("integrations_site.outbound")

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_BACKOFF_SECONDS = 10.0
BACKOFF_BASE_SECONDS = 0.25
USER_AGENT = "integrations-hub/1.0"
RETRY_STATUSES = {429, 500, 502, 503, 504}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
IDEMPOTENT_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
METHODS = IDEMPOTENT_METHODS | {"POST", "PATCH"}
SAFE_TO_FORWARD = {"accept", "user-agent", "content-type", "accept-encoding"}
FRAMING_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "gzip, deflate"}


@dataclass
class OutboundResponse:
    status_code: int
    headers: dict  # lower-cased names; repeated headers joined with ", "
    body: bytes
    url: str
    elapsed_ms: int
    attempts: int = 1
    redirects: list[str] = field(default_factory=list)
    started_at: float = 0.0  # epoch seconds

    def json(self):
        """The body as JSON, bounded (integrations_site.bounds): ValueError when it is not JSON we keep."""
        return bounds.loads(self.body)


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


def request(method: str, url: str, **options) -> OutboundResponse:
    """Send one request from synchronous code; ``options`` and the answer are those of ``arequest``."""
    return transport.run(arequest(method, url, **options))


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
        return transport.run(send_all(asyncio.Semaphore(max(1, concurrency))))
    loop, gates = transport.process_loop()

    async def send_all_shared():
        gate = gates.setdefault(concurrency, asyncio.Semaphore(max(1, concurrency)))
        return await send_all(gate)

    return asyncio.run_coroutine_threadsafe(send_all_shared(), loop).result()


async def arequest(
    method: str,
    url: str,
    *,
    headers: dict | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    retries: int = 0,
    retry_unsafe: bool = False,
    follow_redirects: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    ca_bundle_pem: str | None = None,
    client_cert_pem: str | None = None,
    client_key_pem: str | None = None,
    sleep: Callable[[float], None] | None = None,
) -> OutboundResponse:
    """Send one request through every rule above; see the module docstring.

    Returns the final response, whatever its status; raises OutboundError
    (UrlNotAllowed, OutboundTimeout, ResponseTooLarge) when there is none,
    carrying ``started_at`` (epoch seconds) and ``elapsed_ms`` like a response.
    ``ca_bundle_pem`` replaces the public roots for this request's TLS;
    ``client_cert_pem`` and ``client_key_pem`` present a client certificate.
    ``sleep`` (tests) replaces the wait between retries.
    """
    started_at, started = time.time(), time.monotonic()
    hop = {"host": ""}
    try:
        headers = _clean_headers(headers or {})
        method = method.upper()
        if method not in METHODS and not HEADER_NAME.match(method):
            raise OutboundError("The request method is invalid.")
        context = None
        if ca_bundle_pem or client_cert_pem or client_key_pem:
            context = transport.tls_context(ca_bundle_pem, client_cert_pem, client_key_pem)
        if method not in IDEMPOTENT_METHODS and not retry_unsafe:
            retries = 0
        send = _Send(method, headers, body, context, max_bytes, follow_redirects, hop)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        try:
            async with asyncio.timeout_at(deadline):
                return await _attempts(send, url, retries, sleep, deadline, started_at, started)
        except TimeoutError:
            raise OutboundTimeout(f"No answer from '{hop['host']}' within {timeout:g} s.") from None
    except OutboundError as exc:
        exc.started_at, exc.elapsed_ms = started_at, int((time.monotonic() - started) * 1000)
        raise


async def _attempts(send: "_Send", url, retries, sleep, deadline, started_at, started) -> OutboundResponse:
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        attempt += 1
        try:
            status, response_headers, data, final_url, redirects = await send.follow(url)
        except (UrlNotAllowed, ResponseTooLarge):
            raise
        except OutboundError as exc:
            delay = backoff_delay(attempt - 1)
            if attempt > retries or (sleep is None and loop.time() + delay >= deadline):
                raise
            logger.info("outbound.retry attempt=%s reason=%s delay=%.2f", attempt, exc.code, delay)
            await _pause(delay, sleep)
            continue
        if status in RETRY_STATUSES and attempt <= retries:
            delay = backoff_delay(attempt - 1, retry_after_seconds(response_headers.get("retry-after")))
            if sleep is not None or loop.time() + delay < deadline:  # else the answer we have is the answer
                logger.info("outbound.retry attempt=%s status=%s delay=%.2f", attempt, status, delay)
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
            started_at=started_at,
        )


async def _pause(delay: float, sleep: Callable[[float], None] | None) -> None:
    if sleep is None:
        await asyncio.sleep(delay)
    else:
        sleep(delay)


@dataclass
class _Send:
    """One logical attempt's settings; ``follow`` sends it with its redirects, each hop checked."""

    method: str
    headers: dict
    body: bytes | None
    context: object
    max_bytes: int
    follow_redirects: bool
    hop: dict  # the host being talked to, for the timeout's message

    async def follow(self, url: str):
        method, headers, body = self.method, self.headers, self.body
        redirects, origin = [], None
        for _ in range(MAX_REDIRECTS + 1):
            target = policy.parse_url(url)
            self.hop["host"] = target.host
            target = await transport.RESOLVER.check(target)
            origin = origin or target
            if body is None and method in ("POST", "PUT", "PATCH"):
                body = b""
            status, response_headers, data = await transport.send(target, method, headers, body, self.context,
                                                                  self._read)
            location = response_headers.get("location")
            if not self.follow_redirects or status not in REDIRECT_STATUSES or not location:
                return status, response_headers, data, url, redirects
            url = urljoin(url, location)
            following = policy.parse_url(url)
            if target.scheme == "https" and following.scheme == "http":
                raise UrlNotAllowed(f"'{target.host}' redirected from https to http; refused.")
            leaves_origin = not policy.same_origin(origin, url)
            if status in (307, 308) and body and leaves_origin:
                raise UrlNotAllowed(
                    f"'{target.host}' redirected a request with a body to '{following.host}', another origin; refused."
                )
            redirects.append(url)
            if status == 303 or (status in (301, 302) and method not in ("GET", "HEAD")):
                method = "HEAD" if method == "HEAD" else "GET"
                body = None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            if leaves_origin:
                headers = {k: v for k, v in headers.items() if k.lower() in SAFE_TO_FORWARD}
        raise OutboundError(f"More than {MAX_REDIRECTS} redirects.")

    async def _read(self, response):
        """(status, headers, body) of an aiohttp response, its framing checked and its body capped."""
        headers = _header_dict(response)
        if "transfer-encoding" in headers:
            _check_framing(headers["transfer-encoding"], response.url.host)
        if response.method == "HEAD" or response.status in (204, 304):
            return response.status, headers, b""
        return response.status, headers, await _read_body(response, headers, self.max_bytes)


def _check_framing(transfer_encoding: str, host: str) -> None:
    """Transfer-Encoding is read as tokens: chunked alone (aiohttp frames the rest by the connection's
    close, leaving a transfer coding nobody decodes in the body)."""
    if [token.strip().lower() for token in transfer_encoding.split(",")] != ["chunked"]:
        raise OutboundError(f"The server '{host}' sent a malformed answer (transfer coding).")


def _header_dict(response) -> dict:
    headers = {}
    for name, value in response.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


async def _read_body(response, headers: dict, max_bytes: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise ResponseTooLarge(f"The response is larger than {max_bytes} bytes.")
    encoding = headers.get("content-encoding", "")
    if declared is not None and not encoding:  # framed by the parser and within the cap already
        return await response.content.read()
    body = _Body(encoding, max_bytes)
    content = response.content
    while piece := await content.readany():
        body.add(piece)
    return body.value()


class _Body:
    """Collects a body, decoding gzip/deflate, refused past ``max_bytes`` decoded or when cut short."""

    def __init__(self, encoding: str, max_bytes: int):
        self.max_bytes, self.total, self.chunks, self.received = max_bytes, 0, [], False
        self.encoding = encoding.strip().lower()
        self.decoder = self._decoder()
        # "deflate" is zlib-wrapped or, from some servers, raw: its first two bytes tell which.
        self.deflate_head = b"" if self.encoding == "deflate" else None

    def _decoder(self):
        if self.encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj() if self.encoding == "deflate" else None

    def add(self, data: bytes) -> None:
        if self.decoder is None:
            return self._keep(data)
        self.received = self.received or bool(data)
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
            if self.decoder.eof:  # a second gzip member, or bytes after the end of the stream
                if self.encoding == "deflate":
                    raise zlib.error("data after the end of the deflate stream")
                self.decoder = self._decoder()
            self._keep(self.decoder.decompress(data, self.max_bytes + 1 - self.total))
            data = self.decoder.unconsumed_tail or self.decoder.unused_data

    def _keep(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.max_bytes:
            raise ResponseTooLarge(f"The response is larger than {self.max_bytes} bytes.")
        self.chunks.append(data)

    def value(self) -> bytes:
        if self.decoder is not None and self.received and not self.decoder.eof:
            raise OutboundError("The response body could not be decoded: the compressed stream is cut short.")
        return b"".join(self.chunks)


def _clean_headers(headers: dict) -> dict:
    """The defaults overlaid case-insensitively with ``headers``; Host and framing are always ours.

    A name or value that cannot be sent (CR/LF, control characters) is refused
    without quoting the value, which is usually a secret.
    """
    if not headers:
        return dict(DEFAULT_HEADERS)
    merged = {name.lower(): (name, value) for name, value in DEFAULT_HEADERS.items()}
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise OutboundError("A request header has an invalid name.")
        value = str(value)
        if BAD_HEADER_VALUE.search(value):
            raise OutboundError(f"The request header '{name}' has an invalid value.")
        if name.lower() not in FRAMING_HEADERS:
            merged[name.lower()] = (name, value)
    return dict(merged.values())
