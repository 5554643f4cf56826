"""The outbound address policy: refused URLs, DNS answers, the allow-list, origins.

Refusals are checked on ``check_url`` and through ``request`` without
reaching any server; DNS is stubbed only at the resolver's ``getaddrinfo``.
"""
import ipaddress
import socket
import time

import pytest

from integrations_site import outbound
from integrations_site.outbound import policy, transport

from .conftest import LOCAL

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
    # IETF protocol assignments, documentation and benchmarking ranges
    "http://192.0.0.8/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    "http://[2001:db8::1]/",
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
    # no host, malformed port, a host that cannot be sent
    "http:///path",
    "http://",
    "http://example.com:99999/",
    "http://exa mple.com/",
    "http://example.com%00.evil/",
]


def no_lookup(host, port):
    raise AssertionError(f"{host} was sent to the resolver")


@pytest.mark.parametrize("url", REFUSED)
def test_check_url_refuses_non_public_and_malformed_urls(no_allow, url):
    resolve = no_lookup if "localhost" not in url.lower() else policy.resolve_host
    with pytest.raises(outbound.UrlNotAllowed) as caught:
        outbound.check_url(url, resolve=resolve)
    assert caught.value.code == "URL_NOT_ALLOWED"
    assert caught.value.message


@pytest.mark.parametrize("url", REFUSED)
def test_a_refused_url_is_refused_by_request_before_any_connection(no_allow, monkeypatch, url):
    def no_connect(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(transport.PolicyConnector, "_create_connection", no_connect)
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", url, retries=2, sleep=lambda s: None)


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://0177.0.0.1/",
                                 "http://[::ffff:10.0.0.1]/", "http://169.254.169.254/"])
def test_literal_addresses_are_never_sent_to_the_resolver(no_allow, stub_dns, url):
    calls = stub_dns({})
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", url)
    assert calls == []


@pytest.mark.parametrize(
    ("url", "address", "port", "host_header"),
    [
        ("http://8.8.8.8/", "8.8.8.8", 80, "8.8.8.8"),
        ("https://8.8.8.8/x?y=1", "8.8.8.8", 443, "8.8.8.8"),
        ("http://8.8.8.8:8080/", "8.8.8.8", 8080, "8.8.8.8:8080"),
        ("https://[2001:4860:4860::8888]/", "2001:4860:4860::8888", 443, "[2001:4860:4860::8888]"),
        ("http://0x8.0x8.0x8.0x8/", "8.8.8.8", 80, "0x8.0x8.0x8.0x8"),
    ],
)
def test_check_url_allows_a_public_literal(no_allow, url, address, port, host_header):
    target = outbound.check_url(url, resolve=no_lookup)
    assert (target.address, target.port, target.host_header) == (address, port, host_header)


def test_check_url_keeps_path_and_query_percent_encoded(no_allow):
    assert outbound.check_url("https://8.8.8.8/v1/items?page=2&q=a").path == "/v1/items?page=2&q=a"
    assert outbound.check_url("http://8.8.8.8").path == "/"
    assert outbound.check_url("http://8.8.8.8/a b/café?q=x y#frag").path == "/a%20b/caf%C3%A9?q=x%20y"


def test_an_international_host_is_sent_in_its_ascii_form(no_allow):
    target = outbound.check_url("https://Bücher.example/", resolve=lambda host, port: ["8.8.8.8"])
    assert target.host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("address", "reason"),
    [("8.8.8.8", None), ("2606:4700::1111", None), ("10.0.0.1", "non-public range 10.0.0.0/8"),
     ("::ffff:169.254.169.254", "embeds the non-public address 169.254.169.254"),
     ("64:ff9b::a00:1", "embeds the non-public address 10.0.0.1"),
     ("2002:7f00:1::", "embeds the non-public address 127.0.0.1"),
     # the translation ranges are refused whatever they embed (no NAT64 or 6to4 gateway is reached)
     ("::ffff:8.8.8.8", "non-public range ::ffff:0:0/96"), ("2002:808:808::", "non-public range 2002::/16"),
     ("fc00::1", "non-public range fc00::/7")],
)
def test_blocked_reason_names_the_range_or_the_embedded_ipv4(address, reason):
    found = policy.blocked_reason(ipaddress.ip_address(address))
    assert (found is None) if reason is None else (reason in found)


# --- DNS answers ------------------------------------------------------------------------------


def test_a_name_with_one_public_and_one_private_address_is_refused(no_allow, stub_dns, httpserver):
    stub_dns({"mixed.test": ["8.8.8.8", "10.0.0.5"]})
    with pytest.raises(outbound.UrlNotAllowed) as caught:
        outbound.request("GET", "https://mixed.test/")
    assert "10.0.0.5" in caught.value.message


def test_a_name_whose_private_address_comes_first_is_refused(no_allow, stub_dns):
    stub_dns({"mixed.test": ["::1", "8.8.4.4"]})
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", "https://mixed.test/")


def test_a_name_whose_only_private_address_is_allowed_by_cidr_is_reached(settings, stub_dns, httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.0/8"]
    calls = stub_dns({"api.test": ["127.0.0.1"]})
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    assert outbound.request("GET", f"http://api.test:{httpserver.port}/ping").json() == {"ok": True}
    assert calls == [("api.test", httpserver.port)]


def test_an_allowed_network_does_not_excuse_another_private_address(settings, stub_dns):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.0/8"]
    stub_dns({"api.test": ["127.0.0.1", "169.254.169.254"]})
    with pytest.raises(outbound.UrlNotAllowed) as caught:
        outbound.request("GET", "http://api.test/")
    assert "169.254.169.254" in caught.value.message


def test_an_unresolvable_name_is_a_connection_failure_not_a_refusal(no_allow, monkeypatch):
    async def fail(self, host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(transport.PolicyResolver, "getaddrinfo", fail)
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", "https://nowhere.test/")
    assert not isinstance(caught.value, outbound.UrlNotAllowed)
    assert caught.value.code == "CONNECTION_FAILED"
    assert "nowhere.test" in caught.value.message


def test_a_name_with_no_address_is_a_connection_failure(no_allow, stub_dns):
    stub_dns({"empty.test": []})
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", "https://empty.test/")
    assert caught.value.code == "CONNECTION_FAILED"


def test_the_request_connects_to_the_checked_address_without_a_second_lookup(settings, stub_dns, monkeypatch,
                                                                             httpserver):
    # The first answer is allowed by CIDR; any later lookup would "rebind" to the
    # metadata address. The request must succeed on the first answer alone.
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1/32"]
    calls = stub_dns({"api.test": [["127.0.0.1"], ["169.254.169.254"]]})
    looked_up = []
    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host) or real_getaddrinfo(
        host, *a, **k))
    httpserver.expect_request("/ping").respond_with_json({"ok": True})

    response = outbound.request("GET", f"http://api.test:{httpserver.port}/ping")

    assert response.json() == {"ok": True}
    assert calls == [("api.test", httpserver.port)]
    assert "api.test" not in looked_up
    assert httpserver.log[-1][0].headers["Host"] == f"api.test:{httpserver.port}"


def test_each_redirect_hop_is_looked_up_and_checked(settings, stub_dns, httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    calls = stub_dns({"api.test": ["127.0.0.1"]})
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("", status=301, headers={"Location": "/c"})
    httpserver.expect_request("/c").respond_with_json({"hop": 3})

    response = outbound.request("GET", f"http://api.test:{httpserver.port}/a")

    assert response.json() == {"hop": 3}
    assert len(calls) == 3
    assert [r.headers["Host"] for r, _ in httpserver.log] == [f"api.test:{httpserver.port}"] * 3


def test_a_rebinding_answer_on_a_redirect_hop_is_refused_though_a_connection_is_kept(settings, stub_dns,
                                                                                      httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    stub_dns({"api.test": [["127.0.0.1"], ["10.0.0.1"]]})
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", f"http://api.test:{httpserver.port}/a")
    assert [r.path for r, _ in httpserver.log] == ["/a"]


def test_a_kept_connection_is_not_used_once_the_name_resolves_to_a_refused_address(settings, stub_dns, httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    stub_dns({"api.test": [["127.0.0.1"], ["10.0.0.1"]]})
    httpserver.expect_request("/a").respond_with_json({})
    outbound.request("GET", f"http://api.test:{httpserver.port}/a")
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", f"http://api.test:{httpserver.port}/a")
    assert len(httpserver.log) == 1


@pytest.fixture
def kept_answers(monkeypatch, stub_dns):
    monkeypatch.setattr(transport, "DNS_CACHE_SECONDS", 1.0)
    return stub_dns


def test_an_answer_is_kept_for_a_second_and_checked_on_every_use(settings, kept_answers, httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    calls = kept_answers({"api.test": [["127.0.0.1"], ["8.8.8.8"]]})
    httpserver.expect_request("/ping").respond_with_json({})
    for _ in range(3):
        outbound.request("GET", f"http://api.test:{httpserver.port}/ping")
    assert len(calls) == 1
    settings.OUTBOUND_ALLOWED_HOSTS = []
    with pytest.raises(outbound.UrlNotAllowed):  # the kept answer, checked again
        outbound.request("GET", f"http://api.test:{httpserver.port}/ping")
    assert (len(calls), len(httpserver.log)) == (1, 3)


def test_a_kept_answer_expires(settings, kept_answers, monkeypatch, httpserver):
    monkeypatch.setattr(transport, "DNS_CACHE_SECONDS", 0.05)
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    calls = kept_answers({"api.test": [["127.0.0.1"], ["10.0.0.1"]]})
    httpserver.expect_request("/ping").respond_with_json({})
    outbound.request("GET", f"http://api.test:{httpserver.port}/ping")
    time.sleep(0.1)
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", f"http://api.test:{httpserver.port}/ping")
    assert len(calls) == 2


def test_a_failed_lookup_is_not_kept(no_allow, kept_answers, monkeypatch):
    calls = []

    async def fail(self, host, port):
        calls.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(transport.PolicyResolver, "getaddrinfo", fail)
    for _ in range(2):
        with pytest.raises(outbound.OutboundError):
            outbound.request("GET", "https://flaky.test/")
    assert calls == ["flaky.test", "flaky.test"]


# --- Allow-list -------------------------------------------------------------------------------


@pytest.mark.parametrize("allowed", [["127.0.0.1"], ["127.0.0.0/8"], [" 127.0.0.0/8 "], ["localhost"], ["LOCALHOST."]])
def test_the_allow_list_lets_the_local_server_through(settings, httpserver, allowed):
    settings.OUTBOUND_ALLOWED_HOSTS = allowed
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    host = "localhost" if "localhost" in allowed[0].lower() else "127.0.0.1"
    response = outbound.request("GET", f"http://{host}:{httpserver.port}/ping")
    assert response.json() == {"ok": True}


@pytest.mark.parametrize("allowed", [[], [""], ["10.0.0.0/8"], ["example.com"]])
def test_without_a_matching_allow_entry_the_local_server_is_refused(settings, httpserver, allowed):
    settings.OUTBOUND_ALLOWED_HOSTS = allowed
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", f"http://127.0.0.1:{httpserver.port}/ping")
    assert httpserver.log == []


def test_an_allowed_name_does_not_allow_its_address_spelled_as_an_ip(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.check_url("http://127.0.0.1/")


def test_a_change_of_the_allow_list_applies_to_the_next_request(settings, httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = LOCAL
    httpserver.expect_request("/ping").respond_with_json({})
    outbound.request("GET", httpserver.url_for("/ping"))
    settings.OUTBOUND_ALLOWED_HOSTS = []
    with pytest.raises(outbound.UrlNotAllowed):
        outbound.request("GET", httpserver.url_for("/ping"))
    assert len(httpserver.log) == 1


# --- Origins ----------------------------------------------------------------------------------


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
def test_same_origin_decides_whether_auth_follows_a_redirect(first, redirect, keeps_auth):
    assert policy.same_origin(policy.parse_url(first), redirect) is keeps_auth
