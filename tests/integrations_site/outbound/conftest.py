"""Fixtures of the outbound client's tests: the allow-list, DNS answers, local servers, certificates.

DNS is stubbed only at the resolver's ``getaddrinfo`` (the network edge);
everything that talks HTTP talks to a real local server: pytest-httpserver,
or ``Server``, a threaded raw-socket server that records each request as it
arrived and answers with exact bytes.
"""
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from integrations_site.outbound import transport

LOCAL = ["127.0.0.1", "localhost"]
SECRET = "s3cr3t-token-value"


@pytest.fixture
def no_allow(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    return settings


@pytest.fixture
def allow_local(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = LOCAL
    return settings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stub_dns(monkeypatch):
    """``stub_dns({host: [addresses]})``; a list of lists answers each lookup in turn (the last repeats).
    Returns the list of (host, port) looked up. Answers are not kept between lookups unless a test sets
    ``transport.DNS_CACHE_SECONDS`` itself."""
    calls = []
    monkeypatch.setattr(transport, "DNS_CACHE_SECONDS", 0)
    monkeypatch.setattr(transport.RESOLVER, "_answers", {})

    def install(answers: dict):
        async def getaddrinfo(self, host, port):
            calls.append((host, port))
            answer = answers[host]
            if answer and isinstance(answer[0], list):
                answer = answer[min(sum(1 for c in calls if c[0] == host) - 1, len(answer) - 1)]
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, a) for a in answer]

        monkeypatch.setattr(transport.PolicyResolver, "getaddrinfo", getaddrinfo)
        return calls

    return install


# --- The raw-socket server ------------------------------------------------------------------


@dataclass
class Received:
    connection: int  # 0 for the first connection the server accepted
    number: int  # 0 for the first request on its connection
    head: bytes  # request line and header lines, without the blank line
    body: bytes

    @property
    def line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    @property
    def method(self) -> str:
        return self.line.split(b" ")[0].decode()

    @property
    def path(self) -> str:
        return self.line.split(b" ")[1].decode()

    def header(self, name: str) -> list[str]:
        pairs = (line.decode("latin-1").partition(":") for line in self.head.split(b"\r\n")[1:])
        return [value.strip() for key, _, value in pairs if key.lower() == name]


@dataclass
class Reply:
    """Bytes to send, with floats as pauses (seconds) between them; then close the connection or keep it."""

    parts: list = field(default_factory=list)
    close: bool = False


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class Server:
    """Each accepted connection is served in its own thread, its requests in turn.

    ``answer(received)`` returns the bytes of the answer or a ``Reply``. A request
    counts as in flight from its arrival until its answer starts to be sent.
    """

    def __init__(self, answer, host: str = "127.0.0.1", family=socket.AF_INET, tls=None):
        self.answer, self.tls = answer, tls  # tls: a server-side ssl.SSLContext
        self.sock = socket.create_server((host, 0), family=family, backlog=64)
        self.port = self.sock.getsockname()[1]
        self.received: list[Received] = []
        self.connections = 0
        self.in_flight = self.max_in_flight = 0
        self.hung_up = threading.Event()  # the server closed a connection after a Reply(close=True)
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                index = self.connections
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int):
        buffer, number = b"", 0
        with conn:
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                while True:
                    while b"\r\n\r\n" not in buffer:
                        part = conn.recv(65536)
                        if not part:
                            return
                        buffer += part
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = content_length(head)
                    while len(buffer) < length:
                        part = conn.recv(65536)
                        if not part:
                            return
                        buffer += part
                    received = Received(index, number, head, buffer[:length])
                    buffer, number = buffer[length:], number + 1
                    with self._lock:
                        self.received.append(received)
                        self.in_flight += 1
                        self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    try:
                        reply = self.answer(received)
                    finally:
                        with self._lock:
                            self.in_flight -= 1
                    if isinstance(reply, bytes):
                        reply = Reply([reply])
                    for part in reply.parts:
                        if isinstance(part, float):
                            time.sleep(part)
                        else:
                            conn.sendall(part)
                    if reply.close:
                        conn.close()
                        self.hung_up.set()
                        return
            except OSError:  # ssl.SSLError too: a refused handshake
                return

    def wait_received(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The requests recorded once ``count`` have arrived (or ``timeout`` passed): the client may give up on
        an attempt before this server's thread has read it off the socket."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # and any further attempt already sent
        return list(self.received)

    def stop(self):
        self.stopped.set()
        for sock in [self.sock, *self._open]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sock.close()


@pytest.fixture
def serve():
    servers = []

    def start(answer, **kwargs) -> Server:
        server = Server(answer, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def ok(body: bytes = b"ok", headers: bytes = b"") -> bytes:
    """A framed HTTP/1.1 200; ``headers`` are whole lines, each ending in CRLF."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), headers, body)


def echo_path(received: Received) -> bytes:
    return ok(received.path.encode())


def delayed(seconds: float, answer=echo_path):
    def handler(received: Received):
        time.sleep(seconds)
        return answer(received)

    return handler


