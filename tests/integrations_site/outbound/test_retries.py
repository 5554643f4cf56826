"""Retries (idempotent methods only, unless the caller opts in) and the request's one deadline."""
import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from integrations_site import outbound
from integrations_site.outbound import client

from .conftest import SECRET, Reply, closed_port, delayed, ok
from .test_client import AUTH, assert_no_secret


def test_a_5xx_then_200_is_retried(allow_local, httpserver):
    httpserver.expect_oneshot_request("/flaky").respond_with_data("down", status=500)
    httpserver.expect_request("/flaky").respond_with_json({"ok": True})
    slept = []
    response = outbound.request("GET", httpserver.url_for("/flaky"), retries=2, sleep=slept.append)
    assert (response.status_code, response.attempts, len(slept)) == (200, 2, 1)
    assert 0 <= slept[0] <= outbound.BACKOFF_BASE_SECONDS


def test_retries_stop_at_the_limit_and_return_the_last_answer(allow_local, httpserver):
    httpserver.expect_request("/down").respond_with_data("down", status=503)
    slept = []
    response = outbound.request("GET", httpserver.url_for("/down"), retries=2, sleep=slept.append)
    assert (response.status_code, response.attempts, len(slept)) == (503, 3, 2)
    assert len(httpserver.log) == 3


@pytest.mark.parametrize(("retry_after", "expected"), [("3", 3.0), ("99", outbound.MAX_BACKOFF_SECONDS), ("0", 0.0)])
def test_a_429_honours_retry_after_within_the_cap(allow_local, httpserver, retry_after, expected):
    httpserver.expect_oneshot_request("/limited").respond_with_data(
        "slow down", status=429, headers={"Retry-After": retry_after})
    httpserver.expect_request("/limited").respond_with_json({"ok": True})
    slept = []
    response = outbound.request("GET", httpserver.url_for("/limited"), retries=1, timeout=30, sleep=slept.append)
    assert response.status_code == 200
    assert slept == [expected]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_4xx_other_than_429_is_not_retried(allow_local, httpserver, status):
    httpserver.expect_request("/x").respond_with_data("no", status=status)
    slept = []
    response = outbound.request("GET", httpserver.url_for("/x"), retries=3, sleep=slept.append)
    assert (response.status_code, response.attempts, slept) == (status, 1, [])
    assert len(httpserver.log) == 1


def test_retries_zero_means_one_attempt(allow_local, httpserver):
    httpserver.expect_request("/x").respond_with_data("down", status=500)
    slept = []
    response = outbound.request("GET", httpserver.url_for("/x"), retries=0, sleep=slept.append)
    assert (response.status_code, response.attempts, slept) == (500, 1, [])


def test_a_refused_url_is_not_retried(no_allow):
    slept = []
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", "http://10.0.0.1/", retries=3, sleep=slept.append)
    assert slept == []


def test_a_closed_port_is_a_connection_failure_and_is_retried(allow_local):
    slept = []
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", f"http://127.0.0.1:{closed_port()}/", retries=1, sleep=slept.append)
    assert caught.value.code == "CONNECTION_FAILED"
    assert type(caught.value) is outbound.OutboundError
    assert len(slept) == 1


# --- Only idempotent methods by default ---------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_idempotent_methods_are_retried(allow_local, httpserver, method):
    httpserver.expect_oneshot_request("/x", method=method).respond_with_data("", status=503)
    httpserver.expect_request("/x", method=method).respond_with_data("")
    response = outbound.request(method, httpserver.url_for("/x"), retries=1, sleep=lambda s: None)
    assert (response.status_code, response.attempts) == (200, 2)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_other_methods_are_sent_once_by_default(allow_local, httpserver, method):
    httpserver.expect_request("/token", method=method).respond_with_data("", status=503)
    slept = []
    response = outbound.request(method, httpserver.url_for("/token"), body=b"refresh_token=old", retries=3,
                                sleep=slept.append)
    assert (response.status_code, response.attempts, slept) == (503, 1, [])
    assert len(httpserver.log) == 1


def test_a_post_that_failed_to_connect_is_not_sent_again_by_default(allow_local):
    slept = []
    with pytest.raises(outbound.OutboundError):
        outbound.request("POST", f"http://127.0.0.1:{closed_port()}/", body=b"{}", retries=3, sleep=slept.append)
    assert slept == []


def test_a_post_that_timed_out_is_not_sent_again(allow_local, serve):
    # A token refresh the provider may have applied (rotating the refresh token) must not be replayed.
    server = serve(delayed(1.0))
    with pytest.raises(outbound.OutboundTimeout):
        outbound.request("POST", server.url("/token"), body=b"refresh_token=old", timeout=0.3, retries=3)
    assert len(server.wait_received(1)) == 1


def test_a_post_is_retried_when_the_caller_opts_in(allow_local, httpserver):
    httpserver.expect_oneshot_request("/notify", method="POST").respond_with_data("", status=502)
    httpserver.expect_request("/notify", method="POST").respond_with_json({"ok": True})
    response = outbound.request("POST", httpserver.url_for("/notify"), body=b"{}", retries=1, retry_unsafe=True,
                                sleep=lambda s: None)
    assert (response.status_code, response.attempts) == (200, 2)
    assert [r.get_data() for r, _ in httpserver.log] == [b"{}", b"{}"]


# --- One deadline -------------------------------------------------------------------------------


def test_a_slow_answer_times_out_at_the_deadline(allow_local, serve):
    server = serve(delayed(1.6))
    started = time.monotonic()
    with pytest.raises(outbound.OutboundTimeout) as caught:
        outbound.request("GET", server.url("/slow"), timeout=1)
    assert caught.value.code == "TIMEOUT"
    assert time.monotonic() - started < 1.4


def test_a_timed_out_attempt_leaves_no_budget_for_a_retry(allow_local, serve):
    server = serve(delayed(1.3))
    started = time.monotonic()
    with pytest.raises(outbound.OutboundTimeout):
        outbound.request("GET", server.url("/slow"), timeout=1, retries=3)
    assert time.monotonic() - started < 1.4
    assert len(server.wait_received(1)) == 1


def test_retries_and_their_waits_stay_within_the_deadline(allow_local, serve):
    server = serve(delayed(0.3, lambda r: b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"))
    started = time.monotonic()
    with pytest.raises(outbound.OutboundTimeout) as caught:
        outbound.request("GET", server.url("/busy"), timeout=1, retries=10)
    elapsed = time.monotonic() - started
    assert 0.95 <= elapsed < 1.4
    assert 950 <= caught.value.elapsed_ms < 1400
    assert len(server.wait_received(4)) == 4


def test_a_wait_longer_than_the_budget_left_returns_the_answer_at_hand(allow_local, serve):
    server = serve(lambda r: b"HTTP/1.1 503 Busy\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n")
    started = time.monotonic()
    response = outbound.request("GET", server.url("/busy"), timeout=1, retries=3)
    assert (response.status_code, response.attempts) == (503, 1)
    assert time.monotonic() - started < 0.5


def test_redirect_hops_share_the_deadline(allow_local, serve):
    def answer(received):
        time.sleep(0.3)
        hop = int(received.path.strip("/") or 0)
        return b"HTTP/1.1 302 Found\r\nLocation: /%d\r\nContent-Length: 0\r\n\r\n" % (hop + 1)

    server = serve(answer)
    started = time.monotonic()
    with pytest.raises(outbound.OutboundTimeout):
        outbound.request("GET", server.url("/0"), timeout=1)
    assert time.monotonic() - started < 1.4
    assert len(server.wait_received(4)) == 4


def test_a_body_that_trickles_past_the_deadline_times_out(allow_local, serve):
    server = serve(lambda r: Reply([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"] + [0.2, b"x"] * 100))
    started = time.monotonic()
    with pytest.raises(outbound.OutboundTimeout):
        outbound.request("GET", server.url(), timeout=1)
    assert time.monotonic() - started < 1.5


def test_a_timeout_carries_when_it_started_and_how_long_it_took(allow_local, serve):
    server = serve(lambda received: server.stopped.wait(3) and ok())
    before = time.time()
    with pytest.raises(outbound.OutboundTimeout) as caught:
        outbound.request("GET", server.url(), timeout=0.5)
    after = time.time()
    assert before - 0.05 <= caught.value.started_at <= before + 0.1
    assert 450 <= caught.value.elapsed_ms < 2000
    assert caught.value.elapsed_ms <= (after - before) * 1000 + 5


def test_a_response_carries_when_it_started_and_how_long_it_took(allow_local, serve):
    server = serve(delayed(0.2))
    before = time.time()
    response = outbound.request("GET", server.url())
    after = time.time()
    assert before - 0.05 <= response.started_at <= before + 0.1
    assert 150 <= response.elapsed_ms <= (after - before) * 1000 + 5


def test_a_refused_url_carries_timing_too(no_allow):
    before = time.time()
    with pytest.raises(outbound.UrlNotAllowed) as caught:
        outbound.request("GET", "http://127.0.0.1/")
    assert abs(caught.value.started_at - before) < 0.5
    assert 0 <= caught.value.elapsed_ms < 500


# --- Secrets, backoff and Retry-After -----------------------------------------------------------


def test_a_retried_connection_failure_leaks_no_secret(allow_local, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", f"http://127.0.0.1:{closed_port()}/", headers=AUTH, retries=1, sleep=lambda s: None)
    assert any(r.getMessage().startswith("outbound.retry") for r in caplog.records)
    assert_no_secret(caught, caplog)


def test_a_timeout_leaks_no_secret(allow_local, serve, caplog):
    caplog.set_level(logging.DEBUG)
    server = serve(delayed(1.0))
    with pytest.raises(outbound.OutboundTimeout) as caught:
        outbound.request("GET", server.url(f"/{SECRET}"), headers=AUTH, timeout=0.3)
    assert_no_secret(caught, caplog)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("3", 3.0), (" 7 ", 7.0), ("0", 0.0), ("soon", None), ("-5", None), ("1.5", None)],
)
def test_retry_after_seconds_reads_delta_seconds(value, expected):
    assert outbound.retry_after_seconds(value) == expected


def test_retry_after_seconds_reads_an_http_date():
    seconds = outbound.retry_after_seconds(format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True))
    assert 27 <= seconds <= 30
    assert outbound.retry_after_seconds(format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)) == 0.0


def test_backoff_delay_uses_retry_after_within_the_cap():
    assert outbound.backoff_delay(0, 3.0) == 3.0
    assert outbound.backoff_delay(5, 0.0) == 0.0
    assert outbound.backoff_delay(0, 99.0) == outbound.MAX_BACKOFF_SECONDS
    assert outbound.backoff_delay(0, 99.0, cap=4.0) == 4.0


@pytest.mark.parametrize(("attempt", "ceiling"), [(0, 0.25), (1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0),
                                                  (40, 10.0)])
def test_backoff_delay_grows_exponentially_up_to_the_cap(monkeypatch, attempt, ceiling):
    monkeypatch.setattr(client.random, "uniform", lambda low, high: (low, high))
    assert outbound.backoff_delay(attempt) == (0, ceiling)


def test_backoff_delay_has_full_jitter():
    draws = [outbound.backoff_delay(4) for _ in range(300)]
    assert all(0 <= d <= 4.0 for d in draws)
    assert min(draws) < 1.0 and max(draws) > 3.0
