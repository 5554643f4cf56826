"""Strict parsing of answers, and the request as written on the wire, against a raw-socket server.

Each refusal runs with aiohttp's C parser (llhttp) and with its pure-Python
one (what AIOHTTP_NO_EXTENSIONS selects): both must be strict.
"""
import zlib

import aiohttp.client_proto
import pytest
from aiohttp.http_parser import HttpResponseParserPy

from integrations_site import outbound
from integrations_site.outbound import transport

from .conftest import Reply, echo_path, ok


@pytest.fixture(params=["c", "python"])
def parser(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(aiohttp.client_proto, "HttpResponseParser", HttpResponseParserPy)
    elif aiohttp.client_proto.HttpResponseParser is HttpResponseParserPy:
        pytest.skip("aiohttp runs without its C extensions here")
    return request.param


MALFORMED = {
    "content-length with transfer-encoding":
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "transfer-encoding that only contains chunked":
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "a transfer coding after chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "a transfer coding before chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "chunk size in 0x notation": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    "chunk size with a sign": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n",
    "chunk size with a space": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
    "chunk size not a number": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "no CRLF after chunk data": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
    "bare LF in chunk framing": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
    "bare LF ending a header line": b"HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\nContent-Length: 2\r\n\r\nok",
    "bare LF everywhere": b"HTTP/1.1 200 OK\nX-A: a\nContent-Length: 2\n\nok",
    "bare CR in a header value": b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok",
    "NUL in a header value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "control character in a header value": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok",
    "obsolete line folding": b"HTTP/1.1 200 OK\r\nX-Long: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "space before the colon": b"HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 2\r\n\r\nok",
    "two equal content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "two different content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
}
MALFORMED.update({f"content-length {value!r}": b"HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\nok" % value
                  for value in (b"abc", b"-1", b"+2", b"1 2", b"0x10", b"2, 2", b"\xb2")})
MALFORMED.update({f"status line {line!r}": line + b"\r\nContent-Length: 0\r\n\r\n"
                  for line in (b"HTTP/1.1 OK", b"HTTP/2 200 OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1 20 OK",
                               b"ICY 200 OK", b"http/1.1 200 OK", b"HTTP/1.1 +20 OK")})


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_answer_is_refused(allow_local, serve, parser, answer):
    server = serve(lambda received: Reply([answer]))
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", server.url(), timeout=2)
    assert type(caught.value) is outbound.OutboundError
    assert caught.value.code == "CONNECTION_FAILED"
    assert "malformed" in caught.value.message


@pytest.mark.parametrize("over", [0, 1])
def test_an_answer_may_have_at_most_max_headers(allow_local, serve, parser, over):
    # aiohttp's pure-Python parser counts the status line and the blank line among them
    limit = transport.MAX_HEADERS if parser == "c" else transport.MAX_HEADERS - 2
    extra = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(limit - 1 + over))  # and Content-Length
    server = serve(lambda received: ok(b"ok", extra))
    if over:
        with pytest.raises(outbound.OutboundError) as caught:
            outbound.request("GET", server.url())
        assert "malformed" in caught.value.message
    else:
        response = outbound.request("GET", server.url())
        assert len(response.headers) == limit
        assert response.headers[f"x-h{limit - 2}"] == str(limit - 2)


def test_a_chunked_body_with_extensions_and_trailers_is_read_and_the_connection_reused(allow_local, serve, parser):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"7;quoted=\"a;b\"\r\n, world\r\n"
        b"0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    )
    server = serve(lambda received: chunked if received.path == "/chunked" else echo_path(received))
    assert outbound.request("GET", server.url("/chunked")).body == b"hello, world"
    assert outbound.request("GET", server.url("/after")).body == b"/after"
    assert server.connections == 1


def test_a_large_chunked_body_is_read_whole(allow_local, serve):
    body = b"".join(b"3e8\r\n" + b"x" * 1000 + b"\r\n" for _ in range(300))
    server = serve(lambda received: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")
    assert outbound.request("GET", server.url()).body == b"x" * 300_000


def test_a_chunked_body_over_the_cap_is_refused(allow_local, serve):
    body = b"".join(b"10000\r\n" + b"x" * 65536 + b"\r\n" for _ in range(20))
    server = serve(lambda received: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")
    with pytest.raises(outbound.ResponseTooLarge):
        outbound.request("GET", server.url())


def test_a_head_answer_with_content_length_has_no_body_and_keeps_the_connection(allow_local, serve, parser):
    def answer(received):
        if received.method == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n"
        return echo_path(received)

    server = serve(answer)
    head = outbound.request("HEAD", server.url("/h"), timeout=2)
    assert (head.status_code, head.body, head.headers["content-length"]) == (200, b"", "1234")
    assert outbound.request("GET", server.url("/after"), timeout=2).body == b"/after"
    assert server.connections == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"v1\"\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_204_and_304_answers_have_empty_bodies(allow_local, serve, parser, answer):
    server = serve(lambda received: answer if received.path == "/empty" else echo_path(received))
    assert outbound.request("GET", server.url("/empty"), timeout=2).body == b""
    assert outbound.request("GET", server.url("/after"), timeout=2).body == b"/after"
    assert server.connections == 1


def test_interim_answers_are_skipped(allow_local, serve, parser):
    server = serve(lambda received: (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + ok(b"final", b"X-Final: yes\r\n")
    ))
    response = outbound.request("POST", server.url(), body=b"{}")
    assert (response.status_code, response.body, response.headers["x-final"]) == (200, b"final", "yes")
    assert "link" not in response.headers


def test_duplicate_headers_are_joined_and_names_lower_cased(allow_local, serve, parser):
    server = serve(lambda received: ok(b"ok", b"X-Tag: a\r\nContent-TYPE: text/plain\r\nx-tag: b\r\nX-TAG:  c \r\n"))
    response = outbound.request("GET", server.url())
    assert (response.headers["x-tag"], response.headers["content-type"]) == ("a, b, c", "text/plain")
    assert all(name == name.lower() for name in response.headers)


@pytest.mark.parametrize("partial", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly some",
    b"HTTP/1.1 200 OK\r\nContent-Len",
])
def test_a_server_closing_mid_answer_fails_with_closed_unexpectedly(allow_local, serve, parser, partial):
    server = serve(lambda received: Reply([partial], close=True))
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("POST", server.url(), timeout=2)
    assert type(caught.value) is outbound.OutboundError
    assert "closed unexpectedly" in caught.value.message


# --- Deflate ------------------------------------------------------------------------------------


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


PAYLOAD = b'{"items": ["' + b"abc" * 200 + b'"]}'
DEFLATES = pytest.mark.parametrize("compress", [zlib.compress, raw_deflate], ids=["zlib", "raw"])


@DEFLATES
@pytest.mark.parametrize("encoding", [b"deflate", b"Deflate"])
def test_deflate_bodies_are_decoded(allow_local, serve, compress, encoding):
    server = serve(lambda received: ok(compress(PAYLOAD), b"Content-Encoding: %s\r\n" % encoding))
    assert outbound.request("GET", server.url()).body == PAYLOAD


def in_one_byte_chunks(data: bytes) -> Reply:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n"
    return Reply([head + b"".join(b"1\r\n" + data[i:i + 1] + b"\r\n" for i in range(len(data))) + b"0\r\n\r\n"])


def one_byte_first_then_close(data: bytes) -> Reply:
    return Reply([b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + data[:1], 0.05, data[1:]], close=True)


@pytest.mark.parametrize("framing", [in_one_byte_chunks, one_byte_first_then_close])
@DEFLATES
def test_a_deflate_body_whose_first_piece_is_one_byte_is_decoded(allow_local, serve, compress, framing):
    server = serve(lambda received: framing(compress(PAYLOAD)))
    assert outbound.request("GET", server.url()).body == PAYLOAD


@DEFLATES
def test_a_deflate_bomb_is_refused_by_its_decoded_size(allow_local, serve, compress):
    bomb = compress(b"\0" * (4 * 1024 * 1024))
    assert len(bomb) < 10_000
    server = serve(lambda received: ok(bomb, b"Content-Encoding: deflate\r\n"))
    with pytest.raises(outbound.ResponseTooLarge):
        outbound.request("GET", server.url(), max_bytes=100_000)


@pytest.mark.parametrize(("size", "fits"), [(1000, True), (1001, False)])
def test_a_decoded_body_may_reach_max_bytes_exactly(allow_local, serve, size, fits):
    server = serve(lambda received: ok(zlib.compress(b"a" * size), b"Content-Encoding: deflate\r\n"))
    if fits:
        assert outbound.request("GET", server.url(), max_bytes=1000).body == b"a" * size
    else:
        with pytest.raises(outbound.ResponseTooLarge):
            outbound.request("GET", server.url(), max_bytes=1000)


@pytest.mark.parametrize(("body", "message"), [
    (b"\xff" * 20, "could not be decoded"),
    (zlib.compress(PAYLOAD)[:-6], "cut short"),
    (zlib.compress(PAYLOAD) + b"trailing", "could not be decoded"),
])
def test_a_deflate_body_that_is_invalid_cut_short_or_followed_by_bytes_fails(allow_local, serve, body, message):
    server = serve(lambda received: ok(body, b"Content-Encoding: deflate\r\n"))
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", server.url())
    assert message in caught.value.message


# --- The request on the wire --------------------------------------------------------------------


def test_unsafe_bytes_in_the_path_are_percent_encoded(allow_local, serve):
    server = serve(echo_path)
    outbound.request("GET", server.url("/a b/café\x01\x7f/%41?q=x y&r=ü"))
    assert server.received[0].line == b"GET /a%20b/caf%C3%A9%01%7F/%41?q=x%20y&r=%C3%BC HTTP/1.1"


def test_caller_framing_headers_are_not_sent(allow_local, serve):
    server = serve(echo_path)
    outbound.request("POST", server.url(), body=b"abc", headers={
        "content-LENGTH": "99", "Transfer-Encoding": "chunked", "Connection": "close", "X-Kept": "1"})
    received = server.received[0]
    assert received.header("content-length") == ["3"]
    assert (received.header("transfer-encoding"), received.header("x-kept")) == ([], ["1"])
    assert received.header("connection") in ([], ["keep-alive"])
    assert received.body == b"abc"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_post_put_or_patch_without_body_sends_content_length_zero(allow_local, serve, method):
    server = serve(echo_path)
    outbound.request(method, server.url())
    assert (server.received[0].method, server.received[0].header("content-length")) == (method, ["0"])


@pytest.mark.parametrize(("method", "length"), [("GET", []), ("HEAD", []), ("OPTIONS", []), ("DELETE", ["0"])])
def test_a_request_without_body_sends_content_length_only_for_methods_that_may_have_one(allow_local, serve, method,
                                                                                        length):
    server = serve(lambda received: ok(b"") if received.method == "HEAD" else echo_path(received))
    outbound.request(method, server.url())
    assert server.received[0].header("content-length") == length


def test_the_host_header_is_the_checked_name_with_its_port(settings, stub_dns, serve):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    stub_dns({"api.test": ["127.0.0.1"]})
    server = serve(echo_path)
    outbound.request("GET", f"http://API.test.:{server.port}/x", headers={"Host": "evil.test"})
    assert server.received[0].header("host") == [f"api.test:{server.port}"]
