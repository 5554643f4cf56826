"""The outbound client against a real local server: answers, redirects, auth headers, caps, secrets.

Retries and the request's one deadline are in test_retries.py, https redirects in test_tls.py.
"""
import gzip
import logging

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Response

from integrations_site import outbound

from .conftest import SECRET

AUTH = {"Authorization": f"Bearer {SECRET}", "X-API-Key": SECRET}
BIG = 2 * 1024 * 1024


def test_a_json_answer_is_returned_with_status_headers_and_timing(allow_local, httpserver):
    httpserver.expect_request("/items", query_string="page=1").respond_with_json({"items": [1, 2]})
    response = outbound.request("GET", httpserver.url_for("/items?page=1"))
    assert response.status_code == 200
    assert response.json() == {"items": [1, 2]}
    assert response.headers["content-type"] == "application/json"
    assert (response.attempts, response.redirects) == (1, [])
    assert response.elapsed_ms >= 0
    received = httpserver.log[0][0]
    assert received.headers["User-Agent"] == outbound.USER_AGENT
    assert received.headers["Accept"] == "application/json"
    assert "Cookie" not in received.headers


def test_json_goes_through_the_bounds(allow_local, httpserver):
    httpserver.expect_request("/deep").respond_with_data(b"[" * 500 + b"]" * 500)
    with pytest.raises(ValueError):
        outbound.request("GET", httpserver.url_for("/deep")).json()


def test_a_non_2xx_answer_is_returned_not_raised(allow_local, httpserver):
    httpserver.expect_request("/missing").respond_with_data("nope", status=404)
    response = outbound.request("GET", httpserver.url_for("/missing"))
    assert (response.status_code, response.body) == (404, b"nope")


def test_a_post_sends_its_body_and_content_type_as_given(allow_local, httpserver):
    httpserver.expect_request("/in", method="POST", data=b'{"a":1}').respond_with_json({"ok": True})
    response = outbound.request("post", httpserver.url_for("/in"), body=b'{"a":1}',
                                headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert httpserver.log[0][0].headers["Content-Type"] == "application/json"


def test_a_post_without_content_type_is_not_labelled(allow_local, httpserver):
    httpserver.expect_request("/in", method="POST").respond_with_json({})
    outbound.request("POST", httpserver.url_for("/in"), body=b"x=1")
    assert "Content-Type" not in httpserver.log[0][0].headers


def test_cookies_set_by_one_answer_are_not_sent_on_the_next_request(allow_local, httpserver):
    httpserver.expect_request("/set").respond_with_data("", headers={"Set-Cookie": "session=tenant-a; Path=/"})
    httpserver.expect_request("/next").respond_with_data("")
    outbound.request("GET", httpserver.url_for("/set"))
    outbound.request("GET", httpserver.url_for("/next"))
    assert "Cookie" not in httpserver.log[1][0].headers


# --- Redirects --------------------------------------------------------------------------------


def redirect_chain(httpserver, length: int, status: int = 302):
    for i in range(length):
        httpserver.expect_request(f"/r{i}").respond_with_data("", status=status, headers={"Location": f"/r{i + 1}"})
    httpserver.expect_request(f"/r{length}").respond_with_json({"done": True})


def test_a_redirect_chain_of_five_is_followed(allow_local, httpserver):
    redirect_chain(httpserver, outbound.MAX_REDIRECTS)
    response = outbound.request("GET", httpserver.url_for("/r0"))
    assert response.json() == {"done": True}
    assert response.url == httpserver.url_for(f"/r{outbound.MAX_REDIRECTS}")
    assert len(response.redirects) == outbound.MAX_REDIRECTS


def test_more_than_five_redirects_fail_the_request(allow_local, httpserver):
    redirect_chain(httpserver, outbound.MAX_REDIRECTS + 1)
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", httpserver.url_for("/r0"))
    assert caught.value.code == "CONNECTION_FAILED"
    assert len(httpserver.log) == outbound.MAX_REDIRECTS + 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_follow_redirects_false_returns_the_redirect_as_it_is(allow_local, httpserver, status):
    httpserver.expect_request("/token", method="POST").respond_with_data(
        "moved", status=status, headers={"Location": "/elsewhere"})
    response = outbound.request("POST", httpserver.url_for("/token"), body=b"grant_type=x", follow_redirects=False)
    assert (response.status_code, response.body, response.redirects) == (status, b"moved", [])
    assert response.headers["location"] == "/elsewhere"
    assert len(httpserver.log) == 1


def test_a_303_turns_a_post_into_a_get_without_body(allow_local, httpserver):
    httpserver.expect_request("/form", method="POST").respond_with_data("", status=303, headers={"Location": "/done"})
    httpserver.expect_request("/done", method="GET").respond_with_json({"ok": True})
    response = outbound.request("POST", httpserver.url_for("/form"), body=b"x=1",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    second = httpserver.log[1][0]
    assert (second.method, second.get_data()) == ("GET", b"")
    assert "Content-Type" not in second.headers


@pytest.mark.parametrize("status", [307, 308])
def test_a_same_origin_307_or_308_resends_the_body(allow_local, httpserver, status):
    httpserver.expect_request("/a", method="PUT").respond_with_data("", status=status, headers={"Location": "/b"})
    httpserver.expect_request("/b", method="PUT", data=b"payload").respond_with_json({"ok": True})
    response = outbound.request("PUT", httpserver.url_for("/a"), body=b"payload", headers=AUTH)
    assert response.json() == {"ok": True}
    assert httpserver.log[1][0].headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("status", [307, 308])
def test_a_cross_origin_307_or_308_of_a_request_with_a_body_is_refused(allow_local, httpserver, status):
    httpserver.expect_request("/token", method="POST").respond_with_data(
        "", status=status, headers={"Location": f"http://127.0.0.1:{httpserver.port}/steal"})
    with pytest.raises(outbound.UrlNotAllowed) as caught:
        outbound.request("POST", f"http://localhost:{httpserver.port}/token", body=b"refresh_token=" + SECRET.encode(),
                         headers=AUTH, retries=2, retry_unsafe=True, sleep=lambda s: None)
    assert "another origin" in caught.value.message
    assert SECRET not in caught.value.message
    assert [r.path for r, _ in httpserver.log] == ["/token"]


def test_a_cross_origin_307_of_a_get_is_followed_without_auth(allow_local, httpserver):
    httpserver.expect_request("/a").respond_with_data(
        "", status=307, headers={"Location": f"http://127.0.0.1:{httpserver.port}/b"})
    httpserver.expect_request("/b").respond_with_json({"ok": True})
    assert outbound.request("GET", f"http://localhost:{httpserver.port}/a", headers=AUTH).status_code == 200
    assert "Authorization" not in httpserver.log[1][0].headers


@pytest.mark.parametrize("location", ["http://127.0.0.2:{port}/", "http://127.0.0.1:{port}/", "http://10.0.0.1/",
                                      "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd",
                                      "http://user:pw@localhost:{port}/", "http://[::ffff:127.0.0.1]:{port}/"])
def test_a_redirect_to_a_refused_address_is_refused_on_that_hop(settings, httpserver, location):
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": location.format(port=httpserver.port)})
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", f"http://localhost:{httpserver.port}/start", retries=2, sleep=lambda s: None)
    assert [r.path for r, _ in httpserver.log] == ["/start"]


def test_auth_headers_are_dropped_when_a_redirect_changes_host(allow_local, httpserver):
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": f"http://127.0.0.1:{httpserver.port}/end"})
    httpserver.expect_request("/end").respond_with_json({"ok": True})

    response = outbound.request("GET", f"http://localhost:{httpserver.port}/start", headers=AUTH)

    assert response.status_code == 200
    first, second = (r for r, _ in httpserver.log)
    assert (first.headers["Authorization"], first.headers["X-API-Key"]) == (f"Bearer {SECRET}", SECRET)
    assert "Authorization" not in second.headers
    assert "X-API-Key" not in second.headers
    assert second.headers["Host"] == f"127.0.0.1:{httpserver.port}"
    assert second.headers["User-Agent"] == outbound.USER_AGENT


def test_auth_headers_stay_dropped_when_a_later_hop_returns_to_the_first_host(allow_local, httpserver):
    port = httpserver.port
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": f"http://127.0.0.1:{port}/b"})
    httpserver.expect_request("/b").respond_with_data("", status=302, headers={"Location": f"http://localhost:{port}/c"})
    httpserver.expect_request("/c").respond_with_json({"ok": True})
    outbound.request("GET", f"http://localhost:{port}/a", headers=AUTH)
    assert [("Authorization" in r.headers) for r, _ in httpserver.log] == [True, False, False]


def test_auth_headers_are_kept_on_a_same_host_redirect(allow_local, httpserver):
    httpserver.expect_request("/start").respond_with_data("", status=307, headers={"Location": "/end"})
    httpserver.expect_request("/end").respond_with_json({"ok": True})
    outbound.request("GET", httpserver.url_for("/start"), headers=AUTH)
    assert [r.headers.get("Authorization") for r, _ in httpserver.log] == [f"Bearer {SECRET}"] * 2


def test_auth_headers_are_dropped_when_a_redirect_changes_port(allow_local, httpserver):
    other = HTTPServer(host="localhost", port=0)
    other.start()
    try:
        other.expect_request("/end").respond_with_json({"ok": True})
        httpserver.expect_request("/start").respond_with_data(
            "", status=302, headers={"Location": f"http://localhost:{other.port}/end"})
        assert outbound.request("GET", httpserver.url_for("/start"), headers=AUTH).status_code == 200
        assert "Authorization" not in other.log[0][0].headers
        assert "X-API-Key" not in other.log[0][0].headers
    finally:
        other.clear()
        if other.is_running():
            other.stop()


# --- Bodies -----------------------------------------------------------------------------------


def test_a_body_over_the_cap_with_content_length_is_refused_and_not_retried(allow_local, httpserver):
    httpserver.expect_request("/big").respond_with_data(b"x" * BIG)
    with pytest.raises(outbound.ResponseTooLarge) as caught:
        outbound.request("GET", httpserver.url_for("/big"), retries=2, sleep=lambda s: None)
    assert caught.value.code == "RESPONSE_TOO_LARGE"
    assert len(httpserver.log) == 1


def test_a_body_over_the_cap_without_content_length_is_refused(allow_local, httpserver):
    def stream():
        for _ in range(BIG // 65536):
            yield b"x" * 65536

    httpserver.expect_request("/big").respond_with_response(Response(stream(), status=200))
    with pytest.raises(outbound.ResponseTooLarge):
        outbound.request("GET", httpserver.url_for("/big"))


def test_max_bytes_can_be_lowered(allow_local, httpserver):
    httpserver.expect_request("/b").respond_with_data(b"x" * 101)
    with pytest.raises(outbound.ResponseTooLarge):
        outbound.request("GET", httpserver.url_for("/b"), max_bytes=100)
    httpserver.expect_request("/c").respond_with_data(b"x" * 100)
    assert outbound.request("GET", httpserver.url_for("/c"), max_bytes=100).body == b"x" * 100


def test_a_gzip_body_is_decoded(allow_local, httpserver):
    httpserver.expect_request("/z").respond_with_data(
        gzip.compress(b'{"ok": true}'), headers={"Content-Encoding": "gzip"}, content_type="application/json")
    assert outbound.request("GET", httpserver.url_for("/z")).json() == {"ok": True}
    assert httpserver.log[0][0].headers["Accept-Encoding"] == "gzip, deflate"


def test_a_gzip_body_of_two_members_is_decoded_whole(allow_local, httpserver):
    httpserver.expect_request("/z").respond_with_data(
        gzip.compress(b"first,") + gzip.compress(b"second"), headers={"Content-Encoding": "gzip"})
    assert outbound.request("GET", httpserver.url_for("/z")).body == b"first,second"


def test_a_gzip_bomb_is_refused_by_its_decoded_size(allow_local, httpserver):
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    assert len(bomb) < outbound.DEFAULT_MAX_BYTES
    httpserver.expect_request("/z").respond_with_data(bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(outbound.ResponseTooLarge):
        outbound.request("GET", httpserver.url_for("/z"))


def test_a_truncated_gzip_body_is_an_error_not_a_short_success(allow_local, httpserver):
    whole = gzip.compress(b'{"items": [' + b"1, " * 2000 + b"1]}")
    httpserver.expect_request("/z").respond_with_data(whole[: len(whole) // 2], headers={"Content-Encoding": "gzip"})
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", httpserver.url_for("/z"))
    assert caught.value.code == "CONNECTION_FAILED"
    assert "cut short" in caught.value.message


def test_an_unknown_content_encoding_is_returned_as_sent(allow_local, httpserver):
    httpserver.expect_request("/z").respond_with_data(b"\x8b\x00opaque", headers={"Content-Encoding": "br"})
    assert outbound.request("GET", httpserver.url_for("/z")).body == b"\x8b\x00opaque"


# --- Header hygiene and secrets ---------------------------------------------------------------


def assert_no_secret(caught, caplog):
    assert SECRET not in str(caught.value)
    assert SECRET not in caught.value.message
    assert SECRET not in repr(caught.value.args)
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)


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
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", httpserver.url_for("/p"), headers=headers, retries=2, sleep=slept.append)
    assert caught.value.code == "CONNECTION_FAILED"
    assert_no_secret(caught, caplog)
    assert (httpserver.log, slept) == ([], [])


def test_a_caller_host_header_never_replaces_the_checked_host(allow_local, httpserver):
    httpserver.expect_request("/p").respond_with_json({})
    outbound.request("GET", httpserver.url_for("/p"), headers={"host": "evil.test", "HOST": "evil.test"})
    assert httpserver.log[0][0].headers.getlist("Host") == [f"localhost:{httpserver.port}"]


def test_caller_headers_override_the_defaults_whatever_their_case(allow_local, httpserver):
    httpserver.expect_request("/p").respond_with_json({})
    outbound.request("GET", httpserver.url_for("/p"), headers={"accept": "text/plain", "USER-AGENT": "probe/2"})
    received = httpserver.log[0][0].headers
    assert received.getlist("Accept") == ["text/plain"]
    assert received.getlist("User-Agent") == ["probe/2"]


def test_a_tab_in_a_header_value_is_sent(allow_local, httpserver):
    httpserver.expect_request("/p", headers={"X-Note": "a\tb"}).respond_with_json({})
    assert outbound.request("GET", httpserver.url_for("/p"), headers={"X-Note": "a\tb"}).status_code == 200


@pytest.mark.parametrize("url", ["http://10.0.0.1/", f"http://user:{SECRET}@example.com/", "ftp://example.com/"])
def test_a_refused_url_leaks_no_header_secret(no_allow, caplog, url):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(outbound.UrlNotAllowed) as caught:
        outbound.request("GET", url, headers=AUTH)
    assert_no_secret(caught, caplog)


def test_a_redirect_to_a_refused_address_leaks_no_secret(settings, httpserver, caplog):
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/start").respond_with_data("", status=302, headers={"Location": "http://10.0.0.1/"})
    with pytest.raises(outbound.UrlNotAllowed) as caught:
        outbound.request("GET", httpserver.url_for("/start"), headers=AUTH)
    assert_no_secret(caught, caplog)
