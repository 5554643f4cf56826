"""The HTTP/1.1 transport of connections/http.py.

request_many and its limits, keep-alive, response framing and parsing, the
request as written on the wire, timing fields and per-thread event loops.
Every test talks to ``Server``: a threaded server on raw sockets that records
each request as it arrived, counts accepted connections and requests in
flight, and answers with exact bytes.
"""
import asyncio
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field

import pytest

from connections import http
from tests.connections.test_http import LOCAL, closed_port, stub_dns


@pytest.fixture
def allow_local(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = LOCAL
    return settings


@pytest.fixture
def no_allow(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    return settings


# --- The server -------------------------------------------------------------------------


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

    def header_lines(self) -> list[tuple[str, str]]:
        pairs = []
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            pairs.append((name.lower(), value.strip()))
        return pairs

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.header_lines() if key == name]


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
    counts as in flight from its arrival until its answer starts to be sent, so
    ``max_in_flight`` never counts more than the client had outstanding.
    """

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
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
            except OSError:
                return

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

    def start(answer) -> Server:
        server = Server(answer)
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


def wait_for_hang_up(server: Server):
    assert server.hung_up.wait(2)
    time.sleep(0.05)  # the FIN reaches the client while its loop is idle


# --- 1. request_many ----------------------------------------------------------------------


def test_request_many_answers_in_call_order_not_completion_order(allow_local, serve):
    finished = []

    def answer(received):
        time.sleep({"/a": 0.3, "/b": 0.15, "/c": 0.0}[received.path])
        finished.append(received.path)
        return echo_path(received)

    server = serve(answer)
    calls = [{"method": "GET", "url": server.url(p)} for p in ("/a", "/b", "/c")]

    results = http.request_many(calls, concurrency=3)

    assert finished == ["/c", "/b", "/a"]
    assert [r.body for r in results] == [b"/a", b"/b", b"/c"]
    assert all(isinstance(r, http.OutboundResponse) for r in results)


def test_request_many_returns_each_error_in_its_slot_while_the_others_succeed(allow_local, serve):
    def answer(received):
        if received.path == "/slow":
            server.stopped.wait(3)
        return echo_path(received)

    server = serve(answer)
    calls = [
        {"method": "GET", "url": server.url("/first")},
        {"method": "GET", "url": "http://10.0.0.1/refused"},
        {"method": "GET", "url": f"http://127.0.0.1:{closed_port()}/closed"},
        {"method": "GET", "url": server.url("/slow"), "timeout": 0.3},
        {"method": "GET", "url": server.url("/last")},
    ]

    results = http.request_many(calls, concurrency=5)

    assert [type(r) for r in results] == [
        http.OutboundResponse, http.UrlNotAllowed, http.OutboundError, http.OutboundTimeout, http.OutboundResponse,
    ]
    assert [results[0].body, results[4].body] == [b"/first", b"/last"]
    assert [r.code for r in results[1:4]] == ["URL_NOT_ALLOWED", "CONNECTION_FAILED", "TIMEOUT"]
    for error in results[1:4]:
        assert error.started_at is not None
        assert error.elapsed_ms is not None
    assert results[3].elapsed_ms >= 250


@pytest.mark.parametrize(("concurrency", "limit"), [(1, 1), (3, 3), (0, 1)])
def test_request_many_keeps_at_most_concurrency_requests_in_flight(allow_local, serve, concurrency, limit):
    server = serve(delayed(0.08))
    calls = [{"method": "GET", "url": server.url(f"/{i}")} for i in range(9)]

    results = http.request_many(calls, concurrency=concurrency)

    assert [r.body for r in results] == [f"/{i}".encode() for i in range(9)]
    assert server.max_in_flight == limit
    assert len(server.received) == 9


def test_request_many_reuses_its_connections(allow_local, serve):
    server = serve(delayed(0.02))
    calls = [{"method": "GET", "url": server.url(f"/{i}")} for i in range(12)]

    results = http.request_many(calls, concurrency=3)

    assert all(r.status_code == 200 for r in results)
    assert server.connections <= 3


def test_request_many_of_nothing_returns_an_empty_list_without_starting_a_loop(monkeypatch):
    def no_loop():
        raise AssertionError("the process loop was started")

    monkeypatch.setattr(http, "_process_loop", no_loop)
    seen = {}

    def call():
        seen["local"] = http.request_many([], concurrency=3)
        seen["shared"] = http.request_many([], concurrency=3, process_wide=True)
        seen["runner"] = getattr(http._local, "runner", None)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(5)

    assert seen == {"local": [], "shared": [], "runner": None}


# --- 2. process_wide ------------------------------------------------------------------------


def run_in_threads(count: int, work) -> dict:
    """``work(index)`` in ``count`` threads started together; their results by index."""
    barrier = threading.Barrier(count)
    results, errors = {}, []

    def target(index):
        try:
            barrier.wait(5)
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    return results


def test_process_wide_limit_is_shared_by_every_thread(allow_local, serve):
    server = serve(delayed(0.04))

    def work(thread):
        calls = [{"method": "GET", "url": server.url(f"/t{thread}/{i}")} for i in range(10)]
        return http.request_many(calls, concurrency=3, process_wide=True)

    results = run_in_threads(4, work)

    for thread in range(4):
        assert [r.body for r in results[thread]] == [f"/t{thread}/{i}".encode() for i in range(10)]
    assert len(server.received) == 40
    assert server.max_in_flight == 3
    assert server.connections <= 3  # one loop, one pool of connections for the whole process


def test_process_wide_returns_errors_in_their_slots(allow_local, serve):
    server = serve(echo_path)

    def work(thread):
        calls = [
            {"method": "GET", "url": server.url(f"/t{thread}")},
            {"method": "GET", "url": f"http://127.0.0.1:{closed_port()}/"},
        ]
        return http.request_many(calls, concurrency=2, process_wide=True)

    results = run_in_threads(2, work)

    for thread in range(2):
        answer, error = results[thread]
        assert answer.body == f"/t{thread}".encode()
        assert type(error) is http.OutboundError
        assert error.code == "CONNECTION_FAILED"


def test_without_process_wide_each_thread_has_its_own_limit(allow_local, serve):
    server = serve(delayed(0.25))

    def work(thread):
        calls = [{"method": "GET", "url": server.url(f"/t{thread}/{i}")} for i in range(3)]
        return http.request_many(calls, concurrency=3)

    results = run_in_threads(4, work)

    assert all(r.status_code == 200 for thread in results.values() for r in thread)
    assert server.max_in_flight > 3


# --- 3. Keep-alive ----------------------------------------------------------------------------


def test_sequential_requests_share_one_connection(allow_local, serve):
    server = serve(echo_path)

    bodies = [http.request("GET", server.url(f"/{i}")).body for i in range(5)]

    assert bodies == [f"/{i}".encode() for i in range(5)]
    assert server.connections == 1
    assert [(r.connection, r.number) for r in server.received] == [(0, i) for i in range(5)]


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, close"])
def test_connection_close_in_an_answer_means_a_new_connection_next_time(allow_local, serve, value):
    server = serve(lambda received: ok(headers=b"Connection: %s\r\n" % value))

    for _ in range(3):
        assert http.request("GET", server.url()).body == b"ok"

    assert server.connections == 3


def test_an_http_1_0_answer_is_not_reused(allow_local, serve):
    server = serve(lambda received: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    for _ in range(2):
        assert http.request("GET", server.url()).body == b"ok"

    assert server.connections == 2


def test_a_close_delimited_body_is_read_whole_and_the_connection_not_reused(allow_local, serve):
    server = serve(lambda received: Reply([b"HTTP/1.1 200 OK\r\n\r\n", b"first part,", 0.05, b" second part"],
                                          close=True))

    first = http.request("GET", server.url())
    second = http.request("GET", server.url())

    assert first.body == second.body == b"first part, second part"
    assert server.connections == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_after_the_server_closed_an_idle_connection_the_next_request_uses_a_new_one(allow_local, serve, method):
    server = serve(lambda received: Reply([ok(received.method.encode())], close=received.connection == 0))
    assert http.request(method, server.url()).body == method.encode()
    wait_for_hang_up(server)

    response = http.request(method, server.url(), body=b"payload" if method == "POST" else None)

    assert response.body == method.encode()
    assert server.connections == 2
    assert [(r.connection, r.number) for r in server.received] == [(0, 0), (1, 0)]


def drop_the_second_request(received):
    """Echo the path, but close the first connection when its second request arrives."""
    if (received.connection, received.number) == (0, 1):
        return Reply([], close=True)
    return echo_path(received)


def test_a_get_is_sent_again_on_a_new_connection_when_a_kept_one_is_dropped_on_the_request(allow_local, serve):
    server = serve(drop_the_second_request)
    assert http.request("GET", server.url("/one")).body == b"/one"

    response = http.request("GET", server.url("/two"))

    assert response.body == b"/two"
    assert [(r.connection, r.number, r.path) for r in server.received] == [
        (0, 0, "/one"), (0, 1, "/two"), (1, 0, "/two"),
    ]


def test_a_post_is_not_sent_again_when_a_kept_connection_is_dropped_on_the_request(allow_local, serve):
    server = serve(drop_the_second_request)
    assert http.request("GET", server.url("/one")).body == b"/one"

    with pytest.raises(http.OutboundError) as caught:
        http.request("POST", server.url("/two"), body=b"{}")

    assert type(caught.value) is http.OutboundError
    assert "closed unexpectedly" in caught.value.message
    assert server.connections == 1
    assert [r.method for r in server.received] == ["GET", "POST"]


def test_a_new_connection_closed_before_the_answer_is_not_tried_again(allow_local, serve):
    server = serve(lambda received: Reply([], close=True))

    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", server.url())

    assert "closed unexpectedly" in caught.value.message
    assert server.connections == 1


def test_an_idle_connection_with_unsolicited_bytes_is_not_reused(allow_local, serve):
    # A server may answer "408 Request Timeout" on a connection it closes for idleness:
    # those bytes belong to no request of ours and must not become the next request's answer.
    timeout_notice = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    def answer(received):
        if received.connection == 0:
            return Reply([ok(b"first"), 0.05, timeout_notice], close=True)
        return ok(b"second")

    server = serve(answer)
    assert http.request("GET", server.url()).body == b"first"
    wait_for_hang_up(server)

    response = http.request("GET", server.url())

    assert (response.status_code, response.body) == (200, b"second")
    assert server.connections == 2


def test_an_idle_connection_older_than_the_pool_limit_is_not_reused(allow_local, serve, monkeypatch):
    monkeypatch.setattr(http, "POOL_IDLE_SECONDS", 0.05)
    server = serve(echo_path)

    http.request("GET", server.url("/1"))
    http.request("GET", server.url("/2"))
    time.sleep(0.1)
    http.request("GET", server.url("/3"))

    assert [r.connection for r in server.received] == [0, 0, 1]


def test_idle_connections_are_kept_for_at_most_pool_cache_size_addresses(allow_local, serve, monkeypatch):
    monkeypatch.setattr(http, "POOL_CACHE_SIZE", 1)
    first, second = serve(echo_path), serve(echo_path)

    for _ in range(2):
        http.request("GET", first.url())
        http.request("GET", second.url())
    http.request("GET", second.url())

    assert (first.connections, second.connections) == (2, 2)
    assert [r.connection for r in second.received] == [0, 1, 1]


def test_idle_connections_per_address_are_kept_up_to_pool_maxsize(allow_local, serve, monkeypatch):
    monkeypatch.setattr(http, "POOL_MAXSIZE", 1)
    server = serve(delayed(0.05))
    calls = [{"method": "GET", "url": server.url(f"/{i}")} for i in range(3)]

    http.request_many(calls, concurrency=3)
    assert server.connections == 3
    http.request_many(calls, concurrency=3)

    assert server.connections == 5


def test_a_refused_oversized_answer_leaves_its_connection_unused(allow_local, serve):
    def answer(received):
        return ok(b"x" * 5000) if received.path == "/big" else echo_path(received)

    server = serve(answer)
    assert http.request("GET", server.url("/one")).body == b"/one"

    with pytest.raises(http.ResponseTooLarge):
        http.request("GET", server.url("/big"), max_bytes=100)
    response = http.request("GET", server.url("/two"))

    assert response.body == b"/two"
    assert [(r.connection, r.path) for r in server.received] == [(0, "/one"), (0, "/big"), (1, "/two")]


# --- 4. Framing and parsing ----------------------------------------------------------------------


def test_a_chunked_body_with_extensions_and_trailers_is_read_and_the_connection_reused(allow_local, serve):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"7;quoted=\"a;b\"\r\n, world\r\n"
        b"0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    )
    server = serve(lambda received: chunked if received.path == "/chunked" else echo_path(received))

    response = http.request("GET", server.url("/chunked"))
    after = http.request("GET", server.url("/after"))

    assert response.body == b"hello, world"
    assert after.body == b"/after"
    assert server.connections == 1


def test_a_head_answer_with_content_length_has_no_body_and_keeps_the_connection(allow_local, serve):
    def answer(received):
        if received.method == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n"
        return echo_path(received)

    server = serve(answer)

    head = http.request("HEAD", server.url("/h"), timeout=2)
    after = http.request("GET", server.url("/after"), timeout=2)

    assert (head.status_code, head.body, head.headers["content-length"]) == (200, b"", "1234")
    assert after.body == b"/after"
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"v1\"\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_204_and_304_answers_have_empty_bodies(allow_local, serve, answer):
    server = serve(lambda received: answer if received.path == "/empty" else echo_path(received))

    response = http.request("GET", server.url("/empty"), timeout=2)
    after = http.request("GET", server.url("/after"), timeout=2)

    assert response.body == b""
    assert after.body == b"/after"
    assert server.connections == 1


def test_interim_answers_are_skipped(allow_local, serve):
    server = serve(lambda received: (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        + ok(b"final", b"X-Final: yes\r\n")
    ))

    response = http.request("POST", server.url(), body=b"{}", headers={"Expect": "100-continue"})

    assert (response.status_code, response.body) == (200, b"final")
    assert response.headers["x-final"] == "yes"
    assert "link" not in response.headers


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 OK", b"HTTP/2 200 OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1 20 OK", b"ICY 200 OK", b"http/1.1 200 OK",
     b"HTTP/1.1 +20 OK"],
)
def test_a_malformed_status_line_fails(allow_local, serve, status_line):
    server = serve(lambda received: status_line + b"\r\nContent-Length: 0\r\n\r\n")

    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", server.url())

    assert caught.value.code == "CONNECTION_FAILED"
    assert "malformed" in caught.value.message


@pytest.mark.parametrize("value", [b"abc", b"-1", b"+2", b"1 2", b"0x10", b"2, 2", b"\xb2"])
def test_a_content_length_that_is_not_a_number_fails(allow_local, serve, value):
    server = serve(lambda received: b"HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\nok" % value)

    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", server.url())

    assert type(caught.value) is http.OutboundError
    assert caught.value.code == "CONNECTION_FAILED"
    assert "malformed" in caught.value.message


@pytest.mark.parametrize(("count", "fails"), [(http.MAX_HEADERS - 1, False), (http.MAX_HEADERS, True)])
def test_an_answer_may_have_at_most_max_headers(allow_local, serve, count, fails):
    # Content-Length is one of them.
    extra = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(count))
    server = serve(lambda received: ok(b"ok", extra))

    if fails:
        with pytest.raises(http.OutboundError) as caught:
            http.request("GET", server.url())
        assert "too many headers" in caught.value.message
    else:
        response = http.request("GET", server.url())
        assert len(response.headers) == http.MAX_HEADERS
        assert response.headers[f"x-h{count - 1}"] == str(count - 1)


def test_folded_header_lines_are_joined(allow_local, serve):
    server = serve(lambda received: ok(b"ok", b"X-Long: first\r\n   second\r\n\tthird \r\nX-Next: n\r\n"))

    response = http.request("GET", server.url())

    assert response.headers["x-long"] == "first second third"
    assert response.headers["x-next"] == "n"


def test_duplicate_headers_are_joined_and_names_lower_cased(allow_local, serve):
    server = serve(lambda received: ok(b"ok", b"X-Tag: a\r\nContent-TYPE: text/plain\r\nx-tag: b\r\nX-TAG:  c \r\n"))

    response = http.request("GET", server.url())

    assert response.headers["x-tag"] == "a, b, c"
    assert response.headers["content-type"] == "text/plain"
    assert all(name == name.lower() for name in response.headers)


def zlib_deflate(data: bytes) -> bytes:
    return zlib.compress(data)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


PAYLOAD = b'{"items": ["' + b"abc" * 200 + b'"]}'


@pytest.mark.parametrize("compress", [zlib_deflate, raw_deflate])
@pytest.mark.parametrize("encoding", [b"deflate", b"Deflate"])
def test_deflate_bodies_are_decoded(allow_local, serve, compress, encoding):
    server = serve(lambda received: ok(compress(PAYLOAD), b"Content-Encoding: %s\r\n" % encoding))

    response = http.request("GET", server.url())

    assert response.body == PAYLOAD


def in_one_byte_chunks(data: bytes) -> Reply:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n"
    return Reply([head + b"".join(b"1\r\n" + data[i:i + 1] + b"\r\n" for i in range(len(data))) + b"0\r\n\r\n"])


def one_byte_first_then_close(data: bytes) -> Reply:
    return Reply([b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + data[:1], 0.05, data[1:]], close=True)


@pytest.mark.parametrize("framing", [in_one_byte_chunks, one_byte_first_then_close])
@pytest.mark.parametrize("compress", [zlib_deflate, raw_deflate])
def test_a_deflate_body_whose_first_piece_is_one_byte_is_decoded(allow_local, serve, compress, framing):
    server = serve(lambda received: framing(compress(PAYLOAD)))

    response = http.request("GET", server.url())

    assert response.body == PAYLOAD


@pytest.mark.parametrize("compress", [zlib_deflate, raw_deflate])
def test_a_deflate_bomb_is_refused_by_its_decoded_size(allow_local, serve, compress):
    bomb = compress(b"\0" * (4 * 1024 * 1024))
    assert len(bomb) < 10_000
    server = serve(lambda received: ok(bomb, b"Content-Encoding: deflate\r\n"))

    with pytest.raises(http.ResponseTooLarge):
        http.request("GET", server.url(), max_bytes=100_000)


@pytest.mark.parametrize(("size", "fits"), [(1000, True), (1001, False)])
def test_a_decoded_body_may_reach_max_bytes_exactly(allow_local, serve, size, fits):
    server = serve(lambda received: ok(zlib_deflate(b"a" * size), b"Content-Encoding: deflate\r\n"))

    if fits:
        assert http.request("GET", server.url(), max_bytes=1000).body == b"a" * size
    else:
        with pytest.raises(http.ResponseTooLarge):
            http.request("GET", server.url(), max_bytes=1000)


def test_a_body_that_is_not_valid_deflate_fails(allow_local, serve):
    server = serve(lambda received: ok(b"\xff" * 20, b"Content-Encoding: deflate\r\n"))

    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", server.url())

    assert "could not be decoded" in caught.value.message


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly some",
        b"HTTP/1.1 200 OK\r\nContent-Len",
    ],
)
def test_a_server_closing_mid_answer_fails_with_closed_unexpectedly(allow_local, serve, partial):
    server = serve(lambda received: Reply([partial], close=True))

    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", server.url(), timeout=2)

    assert type(caught.value) is http.OutboundError
    assert "closed unexpectedly" in caught.value.message
    assert server.connections == 1


# --- 5. The request on the wire -----------------------------------------------------------------


def test_unsafe_bytes_in_the_path_are_percent_encoded(allow_local, serve):
    server = serve(echo_path)

    http.request("GET", server.url("/a b/café\x01\x7f/%41?q=x y&r=ü"))

    assert server.received[0].line == b"GET /a%20b/caf%C3%A9%01%7F/%41?q=x%20y&r=%C3%BC HTTP/1.1"


def test_caller_framing_headers_are_not_sent(allow_local, serve):
    server = serve(echo_path)

    http.request(
        "POST", server.url(), body=b"abc",
        headers={"content-LENGTH": "99", "Transfer-Encoding": "chunked", "Connection": "close", "X-Kept": "1"},
    )

    received = server.received[0]
    assert received.header("content-length") == ["3"]
    assert received.header("transfer-encoding") == []
    assert received.header("connection") == []
    assert received.header("x-kept") == ["1"]
    assert received.body == b"abc"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_post_put_or_patch_without_body_sends_content_length_zero(allow_local, serve, method):
    server = serve(echo_path)

    http.request(method, server.url())

    assert server.received[0].method == method
    assert server.received[0].header("content-length") == ["0"]


@pytest.mark.parametrize("method", ["GET", "DELETE", "HEAD", "OPTIONS"])
def test_a_request_without_body_and_not_post_put_or_patch_sends_no_content_length(allow_local, serve, method):
    server = serve(lambda received: ok(b"") if received.method == "HEAD" else echo_path(received))

    http.request(method, server.url())

    assert server.received[0].header("content-length") == []


def test_the_host_header_is_the_checked_name_with_its_port(settings, monkeypatch, serve):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    stub_dns(monkeypatch, {"api.test": ["127.0.0.1"]})
    server = serve(echo_path)

    http.request("GET", f"http://API.test.:{server.port}/x", headers={"Host": "evil.test"})

    assert server.received[0].header("host") == [f"api.test:{server.port}"]


@pytest.mark.parametrize(
    ("scheme", "port", "host"),
    [("http", 80, b"api.test"), ("https", 443, b"api.test"), ("http", 443, b"api.test:443"),
     ("https", 80, b"api.test:80")],
)
def test_the_host_header_leaves_out_only_the_scheme_default_port(scheme, port, host):
    target = http.Target(scheme, "api.test", port, "192.0.2.1", "/")

    head = http._request_head("GET", target, {}, None)

    assert head.split(b"\r\n")[1] == b"Host: " + host


# --- 6. Timing fields --------------------------------------------------------------------------


def test_a_response_carries_when_it_started_and_how_long_it_took(allow_local, serve):
    server = serve(delayed(0.2))

    before = time.time()
    response = http.request("GET", server.url())
    after = time.time()

    assert before - 0.05 <= response.started_at <= before + 0.1
    assert response.started_at <= after
    assert 150 <= response.elapsed_ms < 2000
    assert response.elapsed_ms <= (after - before) * 1000 + 5


def test_a_timeout_carries_when_it_started_and_how_long_it_took(allow_local, serve):
    def answer(received):
        server.stopped.wait(3)
        return ok()

    server = serve(answer)

    before = time.time()
    with pytest.raises(http.OutboundTimeout) as caught:
        http.request("GET", server.url(), timeout=0.5)
    after = time.time()

    assert caught.value.code == "TIMEOUT"
    assert before - 0.05 <= caught.value.started_at <= before + 0.1
    assert 450 <= caught.value.elapsed_ms < 2000
    assert caught.value.elapsed_ms <= (after - before) * 1000 + 5


def test_a_refused_url_carries_timing_too(no_allow):
    before = time.time()
    with pytest.raises(http.UrlNotAllowed) as caught:
        http.request("GET", "http://127.0.0.1/")

    assert abs(caught.value.started_at - before) < 0.5
    assert 0 <= caught.value.elapsed_ms < 500


# --- 7. Threads ----------------------------------------------------------------------------------


async def running_loop():
    return asyncio.get_running_loop()


def test_request_works_from_two_threads_each_on_its_own_loop(allow_local, serve):
    server = serve(delayed(0.02))

    def work(thread):
        bodies = [http.request("GET", server.url(f"/t{thread}/{i}")).body for i in range(3)]
        return bodies, http.run(running_loop()), http.run(running_loop())

    results = run_in_threads(2, work)

    for thread in range(2):
        bodies, loop, same_loop = results[thread]
        assert bodies == [f"/t{thread}/{i}".encode() for i in range(3)]
        assert loop is same_loop
    assert results[0][1] is not results[1][1]
    assert server.connections == 2  # each thread keeps its own connection, never the other's


def test_a_thread_can_use_its_own_loop_and_the_process_loop_in_turn(allow_local, serve):
    server = serve(echo_path)

    def work(thread):
        first = http.request("GET", server.url(f"/t{thread}/a")).body
        shared = [r.body for r in http.request_many(
            [{"method": "GET", "url": server.url(f"/t{thread}/b")}], concurrency=2, process_wide=True,
        )]
        last = http.request("GET", server.url(f"/t{thread}/c")).body
        return [first, *shared, last]

    results = run_in_threads(2, work)

    for thread in range(2):
        assert results[thread] == [f"/t{thread}/{step}".encode() for step in "abc"]
