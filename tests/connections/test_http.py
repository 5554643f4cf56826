"""The SSRF-safe outbound client (connections/http.py) and auth headers.

Refusals are checked on ``check_url`` without connecting; everything that
talks HTTP does so to a real local server (pytest-httpserver, or a raw
socket server where a response shape needs byte-level control). DNS is
stubbed only at ``connections.http.resolve_host``.
"""
import base64
import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from werkzeug.wrappers import Response

from catalog.models import IntegrationProvider
from connections import http
from connections.adapters import auth_headers
from connections.models import Credential

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


# --- 1. Refused URLs ---------------------------------------------------------------

REFUSED = [
    # loopback
    "http://127.0.0.1/",
    "http://127.255.255.254/",
    "http://[::1]/",
    "http://localhost/",
    "http://LOCALHOST./",
    # RFC 1918 and fc00::/7
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://[fd00::1]/",
    # link-local, including the cloud metadata address
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    # CGNAT
    "http://100.64.0.1/",
    # multicast
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    # reserved and broadcast
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    # unspecified
    "http://0.0.0.0/",
    "http://[::]/",
    "http://0/",
    # IETF protocol assignments
    "http://192.0.0.8/",
    # IPv4 inside IPv6: mapped, compatible, NAT64, 6to4
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::a00:1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:a00:1::]/",
    "http://[2002:7f00:1::]/",
    # legacy IPv4 spellings
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://0xa9.0xfe.0xa9.0xfe/",
    # schemes
    "ftp://example.com/file",
    "file:///etc/passwd",
    "gopher://example.com/",
    "javascript:alert(1)",
    "ws://example.com/",
    # credentials in the URL
    "http://user:pass@example.com/",
    "http://user@example.com/",
    # no host, malformed port
    "http:///path",
    "http://",
    "http://example.com:99999/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_check_url_refuses_non_public_and_malformed_urls(no_allow, url):
    with pytest.raises(http.UrlNotAllowed) as caught:
        http.check_url(url)
    assert caught.value.code == "URL_NOT_ALLOWED"
    assert caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://[::ffff:10.0.0.1]/",
        "http://169.254.169.254/",
    ],
)
def test_literal_addresses_are_never_sent_to_the_resolver(no_allow, monkeypatch, url):
    calls = []
    monkeypatch.setattr(http, "resolve_host", lambda host, port: calls.append(host) or ["8.8.8.8"])
    with pytest.raises(http.UrlNotAllowed):
        http.check_url(url)
    assert calls == []


@pytest.mark.parametrize(
    ("url", "address", "port", "host_header"),
    [
        ("http://8.8.8.8/", "8.8.8.8", 80, "8.8.8.8"),
        ("https://8.8.8.8/x?y=1", "8.8.8.8", 443, "8.8.8.8"),
        ("http://8.8.8.8:8080/", "8.8.8.8", 8080, "8.8.8.8:8080"),
        ("https://[2001:4860:4860::8888]/", "2001:4860:4860::8888", 443, "[2001:4860:4860::8888]"),
    ],
)
def test_check_url_allows_a_public_literal(no_allow, url, address, port, host_header):
    target = http.check_url(url)
    assert (target.address, target.port, target.host_header) == (address, port, host_header)


def test_check_url_keeps_path_and_query(no_allow):
    target = http.check_url("https://8.8.8.8/v1/items?page=2&q=a")
    assert target.path == "/v1/items?page=2&q=a"
    assert http.check_url("http://8.8.8.8").path == "/"


# --- 2. DNS -----------------------------------------------------------------------------


def stub_dns(monkeypatch, answers: dict[str, list[list[str]] | list[str]]):
    """Stub the resolver; a list of lists answers each call in turn (the last repeats)."""
    calls = []

    def resolve(host, port):
        calls.append((host, port))
        answer = answers[host]
        if answer and isinstance(answer[0], list):
            return answer[min(len([c for c in calls if c[0] == host]) - 1, len(answer) - 1)]
        return answer

    monkeypatch.setattr(http, "resolve_host", resolve)
    return calls


def test_a_name_with_one_public_and_one_private_address_is_refused(no_allow, monkeypatch):
    stub_dns(monkeypatch, {"mixed.test": ["8.8.8.8", "10.0.0.5"]})
    with pytest.raises(http.UrlNotAllowed) as caught:
        http.check_url("https://mixed.test/")
    assert "10.0.0.5" in caught.value.message


def test_a_name_whose_private_address_comes_first_is_refused(no_allow, monkeypatch):
    stub_dns(monkeypatch, {"mixed.test": ["::1", "8.8.4.4"]})
    with pytest.raises(http.UrlNotAllowed):
        http.check_url("https://mixed.test/")


def test_a_name_with_only_public_addresses_is_allowed_and_pinned(no_allow, monkeypatch):
    calls = stub_dns(monkeypatch, {"public.test": ["8.8.8.8", "8.8.4.4"]})
    target = http.check_url("https://public.test/ping")
    assert (target.host, target.address, target.port, target.host_header) == (
        "public.test", "8.8.8.8", 443, "public.test"
    )
    assert calls == [("public.test", 443)]


def test_an_unresolvable_name_is_a_connection_failure_not_a_refusal(no_allow, monkeypatch):
    def fail(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(http, "resolve_host", fail)
    with pytest.raises(http.OutboundError) as caught:
        http.check_url("https://nowhere.test/")
    assert not isinstance(caught.value, http.UrlNotAllowed)
    assert caught.value.code == "CONNECTION_FAILED"


def test_the_request_connects_to_the_checked_address_without_a_second_lookup(settings, monkeypatch, httpserver):
    # The first answer is allowed by CIDR; any later lookup would "rebind" to the
    # metadata address. The request must succeed on the first answer alone.
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1/32"]
    calls = stub_dns(monkeypatch, {"api.test": [["127.0.0.1"], ["169.254.169.254"]]})
    looked_up = []
    real_getaddrinfo = socket.getaddrinfo

    def spy(host, *args, **kwargs):
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    httpserver.expect_request("/ping").respond_with_json({"ok": True})

    response = http.request("GET", f"http://api.test:{httpserver.port}/ping")

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert calls == [("api.test", httpserver.port)]
    assert "api.test" not in looked_up
    received = httpserver.log[-1][0]
    assert received.headers["Host"] == f"api.test:{httpserver.port}"


def test_each_redirect_hop_resolves_exactly_once(settings, monkeypatch, httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    calls = stub_dns(monkeypatch, {"api.test": ["127.0.0.1"]})
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("", status=301, headers={"Location": "/c"})
    httpserver.expect_request("/c").respond_with_json({"hop": 3})

    response = http.request("GET", f"http://api.test:{httpserver.port}/a")

    assert response.json() == {"hop": 3}
    assert len(calls) == 3
    assert [r.headers["Host"] for r, _ in httpserver.log] == [f"api.test:{httpserver.port}"] * 3


def test_a_rebinding_answer_on_a_redirect_hop_is_refused(settings, monkeypatch, httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    stub_dns(monkeypatch, {"api.test": [["127.0.0.1"], ["10.0.0.1"]]})
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    with pytest.raises(http.UrlNotAllowed):
        http.request("GET", f"http://api.test:{httpserver.port}/a")
    assert [r.path for r, _ in httpserver.log] == ["/a"]


# --- 3. Allow-list -----------------------------------------------------------------------


@pytest.mark.parametrize("allowed", [["127.0.0.1"], ["127.0.0.0/8"], [" 127.0.0.0/8 "], ["localhost"], ["LOCALHOST."]])
def test_the_allow_list_lets_the_local_server_through(settings, httpserver, allowed):
    settings.OUTBOUND_ALLOWED_HOSTS = allowed
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    host = "localhost" if "localhost" in allowed[0].lower() else "127.0.0.1"
    response = http.request("GET", f"http://{host}:{httpserver.port}/ping")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


@pytest.mark.parametrize("allowed", [[], [""], ["10.0.0.0/8"], ["example.com"]])
def test_without_a_matching_allow_entry_the_local_server_is_refused(settings, httpserver, allowed):
    settings.OUTBOUND_ALLOWED_HOSTS = allowed
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    with pytest.raises(http.UrlNotAllowed):
        http.request("GET", f"http://127.0.0.1:{httpserver.port}/ping")
    assert httpserver.log == []


def test_an_allowed_name_does_not_allow_its_address_spelled_as_an_ip(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    with pytest.raises(http.UrlNotAllowed):
        http.check_url("http://127.0.0.1/")


# --- 4. Against a real local server ---------------------------------------------------


def test_a_json_answer_is_returned_with_status_headers_and_timing(allow_local, httpserver):
    httpserver.expect_request("/items", query_string="page=1").respond_with_json({"items": [1, 2]})
    response = http.request("GET", httpserver.url_for("/items?page=1"))
    assert response.status_code == 200
    assert response.json() == {"items": [1, 2]}
    assert response.headers["content-type"] == "application/json"
    assert response.attempts == 1
    assert response.redirects == []
    assert response.elapsed_ms >= 0
    received = httpserver.log[0][0]
    assert received.headers["User-Agent"] == http.USER_AGENT
    assert received.headers["Accept"] == "application/json"


def test_a_non_2xx_answer_is_returned_not_raised(allow_local, httpserver):
    httpserver.expect_request("/missing").respond_with_data("nope", status=404)
    response = http.request("GET", httpserver.url_for("/missing"))
    assert (response.status_code, response.body) == (404, b"nope")


def test_a_post_sends_its_body(allow_local, httpserver):
    httpserver.expect_request("/in", method="POST", data=b'{"a":1}').respond_with_json({"ok": True})
    response = http.request("post", httpserver.url_for("/in"), body=b'{"a":1}',
                            headers={"Content-Type": "application/json"})
    assert response.status_code == 200


def redirect_chain(httpserver, length: int):
    for i in range(length):
        httpserver.expect_request(f"/r{i}").respond_with_data("", status=302, headers={"Location": f"/r{i + 1}"})
    httpserver.expect_request(f"/r{length}").respond_with_json({"done": True})


def test_a_redirect_chain_of_five_is_followed(allow_local, httpserver):
    redirect_chain(httpserver, http.MAX_REDIRECTS)
    response = http.request("GET", httpserver.url_for("/r0"))
    assert response.json() == {"done": True}
    assert response.url == httpserver.url_for(f"/r{http.MAX_REDIRECTS}")
    assert len(response.redirects) == http.MAX_REDIRECTS


def test_more_than_five_redirects_fail_the_request(allow_local, httpserver):
    redirect_chain(httpserver, http.MAX_REDIRECTS + 1)
    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", httpserver.url_for("/r0"))
    assert caught.value.code == "CONNECTION_FAILED"
    assert len(httpserver.log) == http.MAX_REDIRECTS + 1


def test_a_303_turns_a_post_into_a_get_without_body(allow_local, httpserver):
    httpserver.expect_request("/form", method="POST").respond_with_data("", status=303, headers={"Location": "/done"})
    httpserver.expect_request("/done", method="GET").respond_with_json({"ok": True})
    response = http.request("POST", httpserver.url_for("/form"), body=b"x=1")
    assert response.status_code == 200
    assert httpserver.log[1][0].method == "GET"
    assert httpserver.log[1][0].get_data() == b""


@pytest.mark.parametrize("location", ["http://127.0.0.2:{port}/", "http://127.0.0.1:{port}/", "http://10.0.0.1/",
                                      "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd",
                                      "http://user:pw@localhost:{port}/"])
def test_a_redirect_to_a_refused_address_is_refused_on_that_hop(settings, httpserver, location):
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": location.format(port=httpserver.port)}
    )
    with pytest.raises(http.UrlNotAllowed):
        http.request("GET", f"http://localhost:{httpserver.port}/start", retries=2, sleep=lambda s: None)
    assert [r.path for r, _ in httpserver.log] == ["/start"]


AUTH = {"Authorization": f"Bearer {SECRET}", "X-API-Key": SECRET}


def test_auth_headers_are_dropped_when_a_redirect_changes_host(allow_local, httpserver):
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": f"http://127.0.0.1:{httpserver.port}/end"}
    )
    httpserver.expect_request("/end").respond_with_json({"ok": True})

    response = http.request("GET", f"http://localhost:{httpserver.port}/start", headers=AUTH)

    assert response.status_code == 200
    first, second = (r for r, _ in httpserver.log)
    assert first.headers["Authorization"] == f"Bearer {SECRET}"
    assert first.headers["X-API-Key"] == SECRET
    assert "Authorization" not in second.headers
    assert "X-API-Key" not in second.headers
    assert second.headers["Host"] == f"127.0.0.1:{httpserver.port}"
    assert second.headers["User-Agent"] == http.USER_AGENT


def test_auth_headers_stay_dropped_when_a_later_hop_returns_to_the_first_host(allow_local, httpserver):
    port = httpserver.port
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": f"http://127.0.0.1:{port}/b"})
    httpserver.expect_request("/b").respond_with_data("", status=302, headers={"Location": f"http://localhost:{port}/c"})
    httpserver.expect_request("/c").respond_with_json({"ok": True})
    http.request("GET", f"http://localhost:{port}/a", headers=AUTH)
    assert [("Authorization" in r.headers) for r, _ in httpserver.log] == [True, False, False]


def test_auth_headers_are_kept_on_a_same_host_redirect(allow_local, httpserver):
    httpserver.expect_request("/start").respond_with_data("", status=307, headers={"Location": "/end"})
    httpserver.expect_request("/end").respond_with_json({"ok": True})
    http.request("GET", httpserver.url_for("/start"), headers=AUTH)
    assert [r.headers.get("Authorization") for r, _ in httpserver.log] == [f"Bearer {SECRET}"] * 2


def test_auth_headers_are_dropped_when_a_redirect_changes_port(allow_local, httpserver):
    from pytest_httpserver import HTTPServer

    other = HTTPServer(host="localhost", port=0)
    other.start()
    try:
        other.expect_request("/end").respond_with_json({"ok": True})
        httpserver.expect_request("/start").respond_with_data(
            "", status=302, headers={"Location": f"http://localhost:{other.port}/end"}
        )
        response = http.request("GET", httpserver.url_for("/start"), headers=AUTH)
        assert response.status_code == 200
        assert "Authorization" not in other.log[0][0].headers
        assert "X-API-Key" not in other.log[0][0].headers
    finally:
        other.clear()
        if other.is_running():
            other.stop()


BIG = 2 * 1024 * 1024


def test_a_body_over_the_cap_with_content_length_is_refused(allow_local, httpserver):
    httpserver.expect_request("/big").respond_with_data(b"x" * BIG)
    with pytest.raises(http.ResponseTooLarge) as caught:
        http.request("GET", httpserver.url_for("/big"), retries=2, sleep=lambda s: None)
    assert caught.value.code == "RESPONSE_TOO_LARGE"
    assert len(httpserver.log) == 1  # not retried


def test_a_body_over_the_cap_without_content_length_is_refused(allow_local, httpserver):
    def stream():
        for _ in range(BIG // 65536):
            yield b"x" * 65536

    httpserver.expect_request("/big").respond_with_response(Response(stream(), status=200))
    with pytest.raises(http.ResponseTooLarge):
        http.request("GET", httpserver.url_for("/big"))


class RawServer:
    """A one-connection-at-a-time TCP server that answers with fixed bytes."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    part = conn.recv(65536)
                    if not part:
                        break
                    data += part
                self.requests.append(data)
                try:
                    for chunk in self.chunks():
                        conn.sendall(chunk)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.fixture
def raw_server():
    servers = []

    def start(chunks):
        server = RawServer(chunks)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def chunked(total: int, size: int = 65536):
    def chunks():
        yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        sent = 0
        while sent < total:
            piece = b"x" * min(size, total - sent)
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            sent += len(piece)
        yield b"0\r\n\r\n"

    return chunks


def test_a_chunked_body_over_the_cap_is_refused(allow_local, raw_server):
    server = raw_server(chunked(BIG))
    with pytest.raises(http.ResponseTooLarge):
        http.request("GET", f"http://127.0.0.1:{server.port}/big")
    assert b"Host: 127.0.0.1:%d" % server.port in server.requests[0]


def test_a_chunked_body_under_the_cap_is_read_whole(allow_local, raw_server):
    server = raw_server(chunked(300_000, size=1000))
    response = http.request("GET", f"http://127.0.0.1:{server.port}/ok")
    assert response.status_code == 200
    assert response.body == b"x" * 300_000


def test_max_bytes_can_be_lowered(allow_local, httpserver):
    httpserver.expect_request("/b").respond_with_data(b"x" * 101)
    with pytest.raises(http.ResponseTooLarge):
        http.request("GET", httpserver.url_for("/b"), max_bytes=100)
    httpserver.expect_request("/c").respond_with_data(b"x" * 100)
    assert http.request("GET", httpserver.url_for("/c"), max_bytes=100).body == b"x" * 100


SLOW_HANDLERS_RUNNING = threading.Semaphore(0)
SLOW_HANDLERS_STARTED: list = []


def slow_handler(seconds):
    """Answers after ``seconds``; the test's end waits for it (see ``settle_slow_handlers``)."""
    def handler(request):
        SLOW_HANDLERS_STARTED.append(seconds)
        try:
            time.sleep(seconds)
            return Response("late")
        finally:
            SLOW_HANDLERS_RUNNING.release()

    return handler


@pytest.fixture(autouse=True)
def settle_slow_handlers(request):
    """A slow answer still being written when its test ends would land in the next test's server log."""
    if "httpserver" in request.fixturenames:
        request.getfixturevalue("httpserver")  # so that this waits before the server's log is cleared
    yield
    while SLOW_HANDLERS_STARTED:
        SLOW_HANDLERS_STARTED.pop()
        assert SLOW_HANDLERS_RUNNING.acquire(timeout=5)


def test_a_slow_answer_times_out(allow_local, httpserver):
    httpserver.expect_request("/slow").respond_with_handler(slow_handler(1.6))
    started = time.monotonic()
    with pytest.raises(http.OutboundTimeout) as caught:
        http.request("GET", httpserver.url_for("/slow"), timeout=1)
    assert caught.value.code == "TIMEOUT"
    assert time.monotonic() - started < 1.5


def test_a_body_that_trickles_past_the_timeout_times_out(allow_local, raw_server):
    def trickle():
        yield b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        for _ in range(100):
            time.sleep(0.2)
            yield b"x"

    server = raw_server(trickle)
    started = time.monotonic()
    with pytest.raises(http.OutboundTimeout):
        http.request("GET", f"http://127.0.0.1:{server.port}/", timeout=1)
    assert time.monotonic() - started < 2.5


def test_a_closed_port_is_a_connection_failure(allow_local):
    slept = []
    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", f"http://127.0.0.1:{closed_port()}/", retries=1, sleep=slept.append)
    assert caught.value.code == "CONNECTION_FAILED"
    assert type(caught.value) is http.OutboundError
    assert len(slept) == 1


def test_a_5xx_then_200_is_retried(allow_local, httpserver):
    httpserver.expect_oneshot_request("/flaky").respond_with_data("down", status=500)
    httpserver.expect_request("/flaky").respond_with_json({"ok": True})
    slept = []
    response = http.request("GET", httpserver.url_for("/flaky"), retries=2, sleep=slept.append)
    assert response.status_code == 200
    assert response.attempts == 2
    assert len(slept) == 1
    assert 0 <= slept[0] <= http.BACKOFF_BASE_SECONDS


def test_retries_stop_at_the_limit_and_return_the_last_answer(allow_local, httpserver):
    httpserver.expect_request("/down").respond_with_data("down", status=503)
    slept = []
    response = http.request("GET", httpserver.url_for("/down"), retries=2, sleep=slept.append)
    assert (response.status_code, response.attempts, len(slept)) == (503, 3, 2)
    assert len(httpserver.log) == 3


@pytest.mark.parametrize(("retry_after", "expected"), [("3", 3.0), ("99", http.MAX_BACKOFF_SECONDS), ("0", 0.0)])
def test_a_429_honours_retry_after_within_the_cap(allow_local, httpserver, retry_after, expected):
    httpserver.expect_oneshot_request("/limited").respond_with_data(
        "slow down", status=429, headers={"Retry-After": retry_after}
    )
    httpserver.expect_request("/limited").respond_with_json({"ok": True})
    slept = []
    response = http.request("GET", httpserver.url_for("/limited"), retries=1, sleep=slept.append)
    assert response.status_code == 200
    assert slept == [expected]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_4xx_other_than_429_is_not_retried(allow_local, httpserver, status):
    httpserver.expect_request("/x").respond_with_data("no", status=status)
    slept = []
    response = http.request("GET", httpserver.url_for("/x"), retries=3, sleep=slept.append)
    assert (response.status_code, response.attempts, slept) == (status, 1, [])
    assert len(httpserver.log) == 1


def test_retries_zero_means_one_attempt(allow_local, httpserver):
    httpserver.expect_request("/x").respond_with_data("down", status=500)
    slept = []
    response = http.request("GET", httpserver.url_for("/x"), retries=0, sleep=slept.append)
    assert (response.status_code, response.attempts, slept) == (500, 1, [])
    assert len(httpserver.log) == 1


def test_a_refused_url_is_not_retried(no_allow):
    slept = []
    with pytest.raises(http.UrlNotAllowed):
        http.request("GET", "http://10.0.0.1/", retries=3, sleep=slept.append)
    assert slept == []


def test_a_timeout_is_retried(allow_local, httpserver):
    httpserver.expect_oneshot_request("/slow").respond_with_handler(slow_handler(1.3))
    httpserver.expect_request("/slow").respond_with_json({"ok": True})
    slept = []
    response = http.request("GET", httpserver.url_for("/slow"), timeout=1, retries=1, sleep=slept.append)
    assert (response.status_code, response.attempts, len(slept)) == (200, 2, 1)


# --- 5. Secrets never in errors or logs -------------------------------------------------


def assert_no_secret(caught, caplog):
    assert SECRET not in str(caught.value)
    assert SECRET not in caught.value.message
    assert SECRET not in repr(caught.value.args)
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)


def test_a_refused_connection_leaks_no_secret(allow_local, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", f"http://127.0.0.1:{closed_port()}/", headers=AUTH, retries=1, sleep=lambda s: None)
    assert caplog.records, "the retry is logged"
    assert_no_secret(caught, caplog)


def test_a_timeout_leaks_no_secret(allow_local, httpserver, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/slow").respond_with_handler(slow_handler(1.3))
    with pytest.raises(http.OutboundTimeout) as caught:
        http.request("GET", httpserver.url_for("/slow"), headers=AUTH, timeout=1)
    assert_no_secret(caught, caplog)


@pytest.mark.parametrize("url", ["http://10.0.0.1/", f"http://user:{SECRET}@example.com/", "ftp://example.com/"])
def test_a_refused_url_leaks_no_header_secret(no_allow, caplog, url):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(http.UrlNotAllowed) as caught:
        http.request("GET", url, headers=AUTH)
    assert_no_secret(caught, caplog)


def test_a_redirect_to_a_refused_address_leaks_no_secret(settings, httpserver, caplog):
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/start").respond_with_data("", status=302, headers={"Location": "http://10.0.0.1/"})
    with pytest.raises(http.UrlNotAllowed) as caught:
        http.request("GET", httpserver.url_for("/start"), headers=AUTH)
    assert_no_secret(caught, caplog)


# --- 6. auth_headers --------------------------------------------------------------------


def credential(kind, payload, public=None):
    return Credential(type=kind, payload=payload, public_fields=public or {})


PROVIDER = IntegrationProvider(slug="p", auth_type="none", credential_fields=[])


def test_auth_headers_for_bearer():
    assert auth_headers(credential("bearer", {"token": SECRET}), PROVIDER) == {"Authorization": f"Bearer {SECRET}"}


def test_auth_headers_for_api_key_use_the_configured_header():
    cred = credential("api_key", {"api_key": SECRET}, {"header_name": "X-Service-Token"})
    assert auth_headers(cred, PROVIDER) == {"X-Service-Token": SECRET}


def test_auth_headers_for_api_key_default_to_x_api_key():
    assert auth_headers(credential("api_key", {"api_key": SECRET}), PROVIDER) == {"X-API-Key": SECRET}


def test_auth_headers_for_basic():
    cred = credential("basic", {"password": "pa:ss wörd"}, {"username": "alice"})
    header = auth_headers(cred, PROVIDER)["Authorization"]
    scheme, encoded = header.split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == "alice:pa:ss wörd"


@pytest.mark.parametrize(("public", "expected"), [({}, "Bearer"), ({"token_type": "MAC"}, "MAC"),
                                                  ({"token_type": ""}, "Bearer")])
def test_auth_headers_for_oauth2(public, expected):
    cred = credential("oauth2", {"access_token": SECRET, "refresh_token": "r-token-1234"}, public)
    assert auth_headers(cred, PROVIDER) == {"Authorization": f"{expected} {SECRET}"}


def test_auth_headers_for_custom_send_each_field_that_names_a_header():
    provider = IntegrationProvider(
        slug="c",
        auth_type="custom",
        credential_fields=[
            {"name": "client_secret", "secret": True, "header": "X-Client-Secret"},
            {"name": "client_id", "secret": False, "header": "X-Client-Id"},
            {"name": "account", "secret": False},
            {"name": "optional_token", "secret": True, "required": False, "header": "X-Optional"},
        ],
    )
    cred = credential("custom", {"client_secret": SECRET}, {"client_id": "client-42", "account": "acme"})
    assert auth_headers(cred, provider) == {"X-Client-Secret": SECRET, "X-Client-Id": "client-42"}


def test_auth_headers_are_empty_without_a_credential_or_payload():
    assert auth_headers(None, PROVIDER) == {}
    assert auth_headers(credential("bearer", None), PROVIDER) == {}


def test_auth_headers_reach_the_server(allow_local, httpserver):
    httpserver.expect_request("/ping", headers={"X-Service-Token": SECRET}).respond_with_json({"ok": True})
    cred = credential("api_key", {"api_key": SECRET}, {"header_name": "X-Service-Token"})
    response = http.request("GET", httpserver.url_for("/ping"), headers=auth_headers(cred, PROVIDER))
    assert response.status_code == 200


# --- 7. backoff_delay and retry_after_seconds ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("3", 3.0), (" 7 ", 7.0), ("0", 0.0), ("soon", None), ("-5", None), ("1.5", None)],
)
def test_retry_after_seconds_reads_delta_seconds(value, expected):
    assert http.retry_after_seconds(value) == expected


def test_retry_after_seconds_reads_an_http_date():
    future = datetime.now(UTC) + timedelta(seconds=30)
    seconds = http.retry_after_seconds(format_datetime(future, usegmt=True))
    assert 27 <= seconds <= 30


def test_retry_after_seconds_for_a_past_http_date_is_zero():
    past = datetime.now(UTC) - timedelta(hours=1)
    assert http.retry_after_seconds(format_datetime(past, usegmt=True)) == 0.0


def test_backoff_delay_uses_retry_after_within_the_cap():
    assert http.backoff_delay(0, 3.0) == 3.0
    assert http.backoff_delay(5, 0.0) == 0.0
    assert http.backoff_delay(0, 99.0) == http.MAX_BACKOFF_SECONDS
    assert http.backoff_delay(0, 99.0, cap=4.0) == 4.0


@pytest.mark.parametrize(("attempt", "ceiling"), [(0, 0.25), (1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0),
                                                  (40, 10.0)])
def test_backoff_delay_grows_exponentially_up_to_the_cap(monkeypatch, attempt, ceiling):
    monkeypatch.setattr(http.random, "uniform", lambda low, high: (low, high))
    assert http.backoff_delay(attempt) == (0, ceiling)


def test_backoff_delay_has_full_jitter():
    draws = [http.backoff_delay(4) for _ in range(300)]
    assert all(0 <= d <= 4.0 for d in draws)
    assert min(draws) < 1.0 and max(draws) > 3.0


@pytest.mark.parametrize(
    ("first", "redirect", "keeps_auth"),
    [
        ("https://api.test/a", "https://api.test/b", True),
        ("https://api.test/a", "https://API.test./b", True),
        ("https://api.test/a", "https://api.test:443/b", True),
        ("http://api.test/a", "https://api.test/b", True),
        ("https://api.test/a", "http://api.test/b", False),
        ("https://api.test/a", "https://api.test:8443/b", False),
        ("http://api.test:8080/a", "https://api.test/b", False),
        ("https://api.test/a", "https://other.test/b", False),
        ("https://api.test/a", "https://api.test.evil.test/b", False),
        ("https://api.test/a", "https://api.test:bad/b", False),
    ],
)
def test_same_origin_decides_whether_auth_follows_a_redirect(no_allow, monkeypatch, first, redirect, keeps_auth):
    stub_dns(monkeypatch, {"api.test": ["8.8.8.8"]})
    assert http._same_origin(http.check_url(first), redirect) is keeps_auth


# --- Header hygiene ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {SECRET}\r\nX-Injected: 1"},
        {"X-API-Key": f"{SECRET}\n"},
        {"X-API-Key": f"{SECRET}\x00"},
        {"Bad Name": SECRET},
        {"X-Header\r\nX-Injected": SECRET},
        {"": SECRET},
    ],
)
def test_a_header_that_cannot_be_sent_is_refused_without_quoting_it(allow_local, httpserver, caplog, headers):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/p").respond_with_json({})
    slept = []
    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", httpserver.url_for("/p"), headers=headers, retries=2, sleep=slept.append)
    assert caught.value.code == "CONNECTION_FAILED"
    assert_no_secret(caught, caplog)
    assert httpserver.log == []
    assert slept == []


def test_a_caller_host_header_never_replaces_the_checked_host(allow_local, httpserver):
    httpserver.expect_request("/p").respond_with_json({})
    http.request("GET", httpserver.url_for("/p"), headers={"host": "evil.test", "HOST": "evil.test"})
    assert httpserver.log[0][0].headers.getlist("Host") == [f"localhost:{httpserver.port}"]


def test_caller_headers_override_the_defaults_whatever_their_case(allow_local, httpserver):
    httpserver.expect_request("/p").respond_with_json({})
    http.request("GET", httpserver.url_for("/p"), headers={"accept": "text/plain", "USER-AGENT": "probe/2"})
    received = httpserver.log[0][0].headers
    assert received.getlist("Accept") == ["text/plain"]
    assert received.getlist("User-Agent") == ["probe/2"]


def test_a_tab_in_a_header_value_is_sent(allow_local, httpserver):
    httpserver.expect_request("/p", headers={"X-Note": "a\tb"}).respond_with_json({})
    assert http.request("GET", httpserver.url_for("/p"), headers={"X-Note": "a\tb"}).status_code == 200


# --- TLS to the pinned address ------------------------------------------------------------


def make_tls_files(tmp_path, dns_name: str):
    """A throwaway CA and a server certificate for ``dns_name``; returns (ca_path, cert_path, key_path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def name(common):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("Test CA")).issuer_name(name("Test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name(dns_name)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return tuple(str(p) for p in paths)


@pytest.fixture
def tls_server(tmp_path):
    import ssl

    from pytest_httpserver import HTTPServer

    started = []

    def start(dns_name):
        ca, cert, key = make_tls_files(tmp_path, dns_name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server_names = []
        context.sni_callback = lambda sock, server_name, ctx: server_names.append(server_name)
        server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
        server.start()
        started.append(server)
        return server, ca, server_names

    yield start
    for server in started:
        server.clear()
        if server.is_running():
            server.stop()


def test_https_to_a_pinned_address_verifies_the_original_name(settings, monkeypatch, tls_server):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    server, ca, server_names = tls_server("api.test")
    monkeypatch.setattr(http.certifi, "where", lambda: ca)
    stub_dns(monkeypatch, {"api.test": ["127.0.0.1"]})
    server.expect_request("/ping").respond_with_json({"ok": True})

    response = http.request("GET", f"https://api.test:{server.port}/ping")

    assert response.json() == {"ok": True}
    assert server_names == ["api.test"]
    assert server.log[0][0].headers["Host"] == f"api.test:{server.port}"


def test_https_with_a_certificate_for_another_name_fails(settings, monkeypatch, tls_server):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    server, ca, _ = tls_server("other.test")
    monkeypatch.setattr(http.certifi, "where", lambda: ca)
    stub_dns(monkeypatch, {"api.test": ["127.0.0.1"]})
    server.expect_request("/ping").respond_with_json({"ok": True})
    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", f"https://api.test:{server.port}/ping")
    assert caught.value.code == "CONNECTION_FAILED"
    assert server.log == []


def test_https_with_an_untrusted_certificate_fails(settings, monkeypatch, tls_server):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    server, _, _ = tls_server("api.test")
    stub_dns(monkeypatch, {"api.test": ["127.0.0.1"]})
    server.expect_request("/ping").respond_with_json({"ok": True})
    with pytest.raises(http.OutboundError) as caught:
        http.request("GET", f"https://api.test:{server.port}/ping")
    assert caught.value.code == "CONNECTION_FAILED"
    assert "TLS" in caught.value.message


# --- Compressed bodies ---------------------------------------------------------------------


def test_a_gzip_body_is_decoded(allow_local, httpserver):
    import gzip

    httpserver.expect_request("/z").respond_with_data(
        gzip.compress(b'{"ok": true}'), headers={"Content-Encoding": "gzip"}, content_type="application/json"
    )
    assert http.request("GET", httpserver.url_for("/z")).json() == {"ok": True}


def test_a_gzip_bomb_is_refused_by_its_decoded_size(allow_local, httpserver):
    import gzip

    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    assert len(bomb) < http.DEFAULT_MAX_BYTES
    httpserver.expect_request("/z").respond_with_data(bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(http.ResponseTooLarge):
        http.request("GET", httpserver.url_for("/z"))
