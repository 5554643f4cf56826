"""How the outbound client's bytes move: aiohttp, with our address policy in its resolver.

- One aiohttp session per event loop. Its resolver (``PolicyResolver``) hands
  the connector only addresses the policy passed: the client checks each hop
  (one lookup, whose answer is kept for a second; every address checked on
  every use, the request refused when any is refused) and the connector, when
  it needs a new connection for that hop, gets exactly those addresses (no
  second lookup, so DNS rebinding cannot swap them) and tries each in turn,
  IPv6 and IPv4, before failing.
- The URL keeps its host name, so the Host header and the TLS server name are
  the original host's. aiohttp keeps connections alive per host, port, TLS
  context and server name; each was opened to a checked address, and every
  request checks its host again before a kept connection is taken.
- An idle connection that holds bytes nobody asked for (a 408 before closing,
  a smuggled second answer) or that the server closed is never reused.
- Responses are parsed strictly (see ``_strict_parsing``); no cookies are
  kept, no proxy or netrc is read from the environment, TLS verification is
  never off. A per-integration CA bundle and client certificate (mTLS) give
  an ``ssl.SSLContext`` cached per distinct bundle.

Loops: ``run`` runs a coroutine on this thread's own loop (kept between calls,
as it holds the thread's connections); ``process_loop`` is one loop for the
whole process in a daemon thread (scheduled checks share it and one limit).
Both are made again in a forked child, which must not use its parent's sockets.
"""
import asyncio
import atexit
import contextlib
import contextvars
import functools
import hashlib
import os
import select
import socket
import ssl
import tempfile
import threading
import time
from collections import OrderedDict

import aiohttp
import certifi
from aiohttp import http_parser
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from . import policy
from .errors import OutboundError, OutboundTimeout, UrlNotAllowed

POOL_IDLE_SECONDS = 30.0  # an idle connection older than this is closed rather than reused
POOL_LIMIT = 0  # no cap of aiohttp's: callers bound what is in flight (request_many's concurrency)
MAX_HEADERS = 100
MAX_LINE_BYTES = 8190  # the status line
MAX_FIELD_BYTES = 16 * 1024  # one header line
TLS_CACHE_SIZE = 64
DNS_CACHE_SECONDS = 1.0  # how long a lookup's answer is reused (the policy is applied on every use)
DNS_CACHE_SIZE = 4096

# The addresses the client checked for the hop being sent, by (host, port): the resolver's answer.
_checked: contextvars.ContextVar[dict | None] = contextvars.ContextVar("outbound_checked", default=None)


def _strict_parsing() -> None:
    """aiohttp parses responses leniently unless Python runs in development mode (its own switch,
    read when each response parser is made): bare LF line ends, control characters in header
    values, obsolete line folding and spaces after a chunk size are accepted. Those are how two
    hops come to frame one answer differently, so this client always parses as in development
    mode, with the C parser (llhttp) and with the pure-Python one (AIOHTTP_NO_EXTENSIONS)."""
    http_parser.HttpResponseParserPy.lax = False
    http_parser.DEBUG = True  # the pure-Python parser's line separator
    try:
        from aiohttp import _http_parser
    except ImportError:  # AIOHTTP_NO_EXTENSIONS builds
        return
    _http_parser.DEBUG = True


_strict_parsing()


class PolicyResolver(AbstractResolver):
    """Looks a host up once and applies the policy to every address; never hands out an unchecked one.

    A lookup's answer is kept for ``DNS_CACHE_SECONDS`` per (host, port) and shared by every loop;
    the policy is applied to it again on each use, so only the lookup is saved, never the check.
    """

    def __init__(self):
        self._answers: dict[tuple[str, int], tuple[float, tuple[str, ...]]] = {}

    async def getaddrinfo(self, host: str, port: int) -> list[tuple[int, str]]:
        """(family, address) of every answer for ``host``: the network edge (tests stub this)."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [(family, address[0]) for family, _, _, _, address in infos]

    async def check(self, target: policy.Target) -> policy.Target:
        """``target`` with its checked addresses: a literal as it is, a name looked up once."""
        if target.literal is not None:
            return policy.check_addresses(target, (target.literal,))
        key, now = (target.host, target.port), time.monotonic()
        kept = self._answers.get(key)
        if kept is not None and kept[0] > now:
            return policy.check_addresses(target, kept[1])
        try:
            answers = tuple(address for _, address in await self.getaddrinfo(target.host, target.port))
        except (OSError, UnicodeError):
            raise OutboundError(f"Could not resolve host '{target.host}'.") from None
        if DNS_CACHE_SECONDS > 0 and answers:
            if len(self._answers) >= DNS_CACHE_SIZE:
                self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
            self._answers[key] = (now + DNS_CACHE_SECONDS, answers)
        return policy.check_addresses(target, answers)

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_UNSPEC) -> list[ResolveResult]:
        checked = (_checked.get() or {}).get((host, port))
        if checked is None:  # a connection the client did not check first: check it here
            literal = policy.literal_ip(host)
            target = policy.Target("https", host, port, "/", (), None if literal is None else str(literal))
            checked = (await self.check(target)).addresses
        return [
            ResolveResult(hostname=host, host=address, port=port, proto=0, flags=socket.AI_NUMERICHOST,
                          family=socket.AF_INET6 if ":" in address else socket.AF_INET)
            for address in checked
        ]

    async def close(self) -> None:
        return None


RESOLVER = PolicyResolver()  # one for every loop's session (it shares the kept answers)


class PolicyConnector(aiohttp.TCPConnector):
    """aiohttp's connector, minus reuse of an idle connection that is closed or holds unsolicited bytes.

    aiohttp parses whatever arrives on an idle kept connection and would hand
    it to the next request as its answer. The check needs the connection the
    pool picked, which only ``_get`` sees; test_transport covers it.
    """

    async def _get(self, key, traces):
        while (connection := await super()._get(key, traces)) is not None:
            if not _dropped(connection.protocol):
                return connection
            connection.close()
        return None


def _dropped(protocol) -> bool:
    """Whether an idle connection was closed by the server or holds bytes nobody asked for, parsed
    already (the loop ran meanwhile) or still waiting in the socket (it did not)."""
    if protocol is None or protocol.should_close or not protocol.is_connected():
        return True
    sock = protocol.transport.get_extra_info("socket")
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


# --- TLS --------------------------------------------------------------------------------

_tls_contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
_tls_lock = threading.Lock()


def tls_context(ca_bundle_pem: str | None = None, client_cert_pem: str | None = None,
                client_key_pem: str | None = None) -> ssl.SSLContext:
    """A verifying context: certifi's roots, or only ``ca_bundle_pem``'s CAs when given, and the
    client certificate and key when given (mTLS). One context per distinct bundle, so connections
    made with it are reused (aiohttp keeps them apart per context)."""
    if bool(client_cert_pem) != bool(client_key_pem):
        raise OutboundError("A client certificate needs its key, and a key its certificate.")
    material = "\0".join((certifi.where(), ca_bundle_pem or "", client_cert_pem or "", client_key_pem or ""))
    key = hashlib.sha256(material.encode()).hexdigest()  # the key material itself is never a dict key
    with _tls_lock:
        context = _tls_contexts.get(key)
        if context is not None:
            _tls_contexts.move_to_end(key)
            return context
    try:
        context = _new_tls_context(ca_bundle_pem, client_cert_pem, client_key_pem)
    except (ssl.SSLError, ValueError, OSError):
        raise OutboundError("The integration's TLS certificates could not be loaded.") from None
    with _tls_lock:
        context = _tls_contexts.setdefault(key, context)
        while len(_tls_contexts) > TLS_CACHE_SIZE:
            _tls_contexts.popitem(last=False)
    return context


def _new_tls_context(ca_bundle_pem, client_cert_pem, client_key_pem) -> ssl.SSLContext:
    if ca_bundle_pem:
        context = ssl.create_default_context(cadata=ca_bundle_pem)
    else:
        context = ssl.create_default_context(cafile=certifi.where())
    if client_cert_pem:
        _load_client_pair(context, client_cert_pem, client_key_pem)
    return context


def _load_client_pair(context: ssl.SSLContext, client_cert_pem: str, client_key_pem: str) -> None:
    """The certificate from its own text, the key from its own: a key pasted as the certificate is refused."""
    if "PRIVATE KEY" in client_cert_pem:
        raise ValueError("a private key in the certificate")
    with _pem_file(client_cert_pem) as cert_path, _pem_file(client_key_pem) as key_path:
        # A key under a passphrase is refused; without ``password`` OpenSSL would prompt on a terminal.
        context.load_cert_chain(cert_path, key_path, password=_no_passphrase)


def _no_passphrase() -> bytes:
    return b""


def tls_problems(ca_bundle_pem: str | None = None, client_cert_pem: str | None = None,
                 client_key_pem: str | None = None) -> dict[str, str]:
    """What is wrong with TLS material before it is stored: ``{"ca_bundle" | "client_certificate" |
    "client_key": message}``, empty when ``tls_context`` would load it."""
    problems = {}
    if ca_bundle_pem:
        try:
            ssl.create_default_context(cadata=ca_bundle_pem)
        except (ssl.SSLError, ValueError):
            problems["ca_bundle"] = "Must hold one or more PEM certificates (-----BEGIN CERTIFICATE-----)."
    if bool(client_cert_pem) != bool(client_key_pem):
        missing = "client_key" if client_cert_pem else "client_certificate"
        problems[missing] = "A client certificate and its key are given together."
    elif client_cert_pem:
        if "PRIVATE KEY" in client_cert_pem:
            problems["client_certificate"] = "Must hold certificates only; the private key goes in client_key."
            return problems
        try:
            _load_client_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), client_cert_pem, client_key_pem)
        except (ssl.SSLError, ValueError, OSError):
            problems["client_key"] = (
                "The client certificate and key must be PEM, the key unencrypted, and the key must be the "
                "certificate's own."
            )
    return problems


@contextlib.contextmanager
def _pem_file(pem: str):
    """A path to ``pem`` for ``load_cert_chain``, which reads only files: an anonymous memory file
    where the system has them, so the key never touches a disk; else a private temporary file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("outbound-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, pem.encode())
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as handle:  # created 0600
        handle.write(pem)
        handle.flush()
        yield handle.name


# --- Sessions and loops -------------------------------------------------------------------

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
_sessions_pid = os.getpid()


def session() -> aiohttp.ClientSession:
    """The running loop's session (made on first use; those of loops closed since are forgotten)."""
    global _sessions, _sessions_pid
    if _sessions_pid != os.getpid():  # a forked child: its parent's sessions are not its own
        _sessions, _sessions_pid = {}, os.getpid()
    loop = asyncio.get_running_loop()
    current = _sessions.get(loop)
    if current is None or current.closed:
        for old in [old for old in list(_sessions) if old.is_closed()]:
            _sessions.pop(old, None)
        connector = PolicyConnector(
            resolver=RESOLVER, use_dns_cache=False, limit=POOL_LIMIT,
            keepalive_timeout=POOL_IDLE_SECONDS, ssl=tls_context(),
        )
        current = _sessions[loop] = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None),
            max_line_size=MAX_LINE_BYTES, max_field_size=MAX_FIELD_BYTES, max_headers=MAX_HEADERS,
        )
    return current


@atexit.register
def _close_sessions() -> None:
    """Close this process's open sessions at exit, so that no loop reports an unclosed session. A
    forked child never closes its parent's: closing a TLS connection writes on the shared socket."""
    if _sessions_pid != os.getpid():
        return
    for loop, current in list(_sessions.items()):
        if current.closed or loop.is_closed():
            continue
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(current.close(), loop).result(1)
            else:
                loop.run_until_complete(current.close())
        except Exception:  # noqa: BLE001 (best effort at exit)
            pass


async def aclose() -> None:
    """Close the running loop's session (for a caller that owns its loop and is about to end it)."""
    current = _sessions.pop(asyncio.get_running_loop(), None)
    if current is not None:
        await current.close()


async def send(target: policy.Target, method: str, headers: dict, body: bytes | None,
               context: ssl.SSLContext | None, read):
    """Send one request to a checked ``target`` and return ``await read(response)`` (the aiohttp
    response, its body still to read). Transport failures, in either, become OutboundError."""
    token = _checked.set({(target.host, target.port): target.addresses})
    try:
        async with session().request(
            method, _url(target), headers=headers, data=body, allow_redirects=False,
            ssl=context if (context is not None and target.scheme == "https") else True,
            # bytes are sent as given, not labelled application/octet-stream
            skip_auto_headers=_SKIP_CONTENT_TYPE if body is not None else None,
        ) as response:
            return await read(response)
    except OutboundError:
        raise
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise transport_error(exc, target.host) from None
    finally:
        _checked.reset(token)


_SKIP_CONTENT_TYPE = ("Content-Type",)


def _url(target: policy.Target) -> URL:
    return _build_url(target.scheme, target.host, target.port, target.path)


@functools.lru_cache(maxsize=1024)
def _build_url(scheme: str, host: str, port: int, path: str) -> URL:
    host = f"[{host.replace('%', '%25')}]" if ":" in host else host
    path, _, query = path.partition("?")
    return URL.build(scheme=scheme, host=host, port=port, path=path, query_string=query, encoded=True)


def transport_error(exc: BaseException, host: str) -> OutboundError:
    """The OutboundError a transport failure stands for (header values never enter the message)."""
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return OutboundTimeout(f"Timed out talking to '{host}'.")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError | ssl.SSLError):
        return OutboundError(f"TLS handshake with '{host}' failed.")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return OutboundError(f"Could not resolve host '{host}'.")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return OutboundError(f"Could not connect to '{host}' (connection refused or unreachable).")
    if isinstance(exc, aiohttp.ClientResponseError):  # the parser refused the answer
        return OutboundError(f"The server '{host}' sent a malformed answer.")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | ConnectionError):
        return OutboundError(f"The connection to '{host}' was closed unexpectedly.")
    if isinstance(exc, aiohttp.InvalidURL):
        return UrlNotAllowed("The URL cannot be sent.")
    return OutboundError(f"Could not talk to '{host}' ({type(exc).__name__}).")


_local = threading.local()


def run(coro):
    """Run ``coro`` to completion on this thread's event loop (made on first use, and again after a fork)."""
    runner = getattr(_local, "runner", None)
    if runner is None or _local.pid != os.getpid():
        runner, _local.pid = asyncio.Runner(), os.getpid()
        _local.runner = runner
    return runner.run(coro)


_process = {"pid": None, "loop": None, "gates": {}}
_process_lock = threading.Lock()


def process_loop() -> tuple[asyncio.AbstractEventLoop, dict]:
    """This process's shared event loop (a daemon thread, made again in a forked child) and its gates."""
    with _process_lock:
        if _process["pid"] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="outbound-http", daemon=True).start()
            _process.update(pid=os.getpid(), loop=loop, gates={})
        return _process["loop"], _process["gates"]
