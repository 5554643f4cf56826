"""TLS: verification of the original name at a checked address, per-integration CA bundles and mTLS.

Certificates are made in the test (``make_pki``); the servers are raw-socket
``Server``s wrapped in TLS, reached as ``api.test`` through a stubbed lookup.
"""
import ssl
import tempfile

import pytest

from integrations_site import outbound
from integrations_site.outbound import transport
from tests.pki import make_pki, server_context

from .conftest import SECRET, echo_path


@pytest.fixture
def pki():
    return make_pki("api.test")


@pytest.fixture
def tls_serve(settings, stub_dns, serve):
    """``tls_serve(pki, answer, client_ca=None)``: a TLS server for ``pki``'s server certificate reached as
    api.test (stubbed to 127.0.0.1); with ``client_ca`` it requires a client certificate that CA signed."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    stub_dns({"api.test": ["127.0.0.1"]})

    def start(pki, answer=echo_path, client_ca=None):
        context = server_context(pki, client_ca)
        server = serve(answer, tls=context)
        server.server_names = []
        server.client_certs = []
        context.sni_callback = lambda sock, name, ctx: server.server_names.append(name)
        server.https = lambda path="/": f"https://api.test:{server.port}{path}"
        return server

    return start


def test_https_to_a_checked_address_verifies_the_original_name(tls_serve, pki):
    server = tls_serve(pki)
    response = outbound.request("GET", server.https("/ping"), ca_bundle_pem=pki.ca_pem)
    assert response.body == b"/ping"
    assert server.server_names == ["api.test"]
    assert server.received[0].header("host") == [f"api.test:{server.port}"]


def test_connections_made_with_one_bundle_are_kept_alive(tls_serve, pki):
    server = tls_serve(pki)
    for i in range(3):
        assert outbound.request("GET", server.https(f"/{i}"), ca_bundle_pem=pki.ca_pem).body == f"/{i}".encode()
    assert server.connections == 1


def test_https_with_a_certificate_for_another_name_fails(tls_serve):
    other = make_pki("other.test")
    server = tls_serve(other)
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", server.https("/ping"), ca_bundle_pem=other.ca_pem)
    assert caught.value.code == "CONNECTION_FAILED"
    assert "TLS" in caught.value.message
    assert server.received == []


def test_https_with_an_untrusted_certificate_fails(tls_serve, pki):
    server = tls_serve(pki)
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", server.https("/ping"))
    assert caught.value.code == "CONNECTION_FAILED"
    assert "TLS" in caught.value.message
    assert server.received == []


def test_a_ca_bundle_replaces_the_public_roots_for_its_request(tls_serve, pki):
    server = tls_serve(pki)
    with pytest.raises(outbound.OutboundError):
        outbound.request("GET", server.https("/ping"), ca_bundle_pem=make_pki("api.test").ca_pem)
    assert outbound.request("GET", server.https("/ping"), ca_bundle_pem=pki.ca_pem).status_code == 200


def test_a_server_that_requires_a_client_certificate_refuses_a_request_without_one(tls_serve, pki):
    server = tls_serve(pki, client_ca=pki.ca_pem)
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", server.https("/ping"), ca_bundle_pem=pki.ca_pem)
    assert caught.value.code == "CONNECTION_FAILED"
    assert server.received == []


def test_a_client_certificate_and_key_are_presented_for_mtls(tls_serve, pki):
    server = tls_serve(pki, client_ca=pki.ca_pem)
    response = outbound.request("GET", server.https("/ping"), ca_bundle_pem=pki.ca_pem,
                                client_cert_pem=pki.client_cert_pem, client_key_pem=pki.client_key_pem)
    assert response.body == b"/ping"


def test_a_client_key_is_never_written_to_a_file(monkeypatch, pki):
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", lambda *a, **k: pytest.fail("a key file was written"))
    context = transport.tls_context(pki.ca_pem, pki.client_cert_pem, pki.client_key_pem + "\n")
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_tls_contexts_are_cached_per_distinct_bundle(pki):
    first = transport.tls_context(pki.ca_pem, pki.client_cert_pem, pki.client_key_pem)
    assert transport.tls_context(pki.ca_pem, pki.client_cert_pem, pki.client_key_pem) is first
    assert transport.tls_context(pki.ca_pem) is not first
    assert transport.tls_context() is transport.tls_context()
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname


@pytest.mark.parametrize("options", [
    {"client_cert_pem": "cert only"},
    {"client_key_pem": f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"},
    {"ca_bundle_pem": "not a certificate"},
    {"client_cert_pem": "not a certificate", "client_key_pem": f"not a key {SECRET}"},
])
def test_unusable_tls_material_is_refused_without_quoting_it(allow_local, httpserver, options):
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", httpserver.url_for("/"), **options)
    assert caught.value.code == "CONNECTION_FAILED"
    assert SECRET not in caught.value.message
    assert httpserver.log == []


def test_a_redirect_from_https_to_http_is_refused(tls_serve, pki):
    server = tls_serve(pki, lambda received: b"HTTP/1.1 302 Found\r\nLocation: http://api.test:%d/plain\r\n"
                                             b"Content-Length: 0\r\n\r\n" % server.port)
    with pytest.raises(outbound.UrlNotAllowed) as caught:
        outbound.request("GET", server.https("/start"), ca_bundle_pem=pki.ca_pem,
                         headers={"Authorization": f"Bearer {SECRET}"})
    assert "https to http" in caught.value.message
    assert [r.path for r in server.received] == ["/start"]


def test_tls_problems_names_what_cannot_be_loaded(pki):
    other = make_pki("api.test")
    assert outbound.tls_problems(pki.ca_pem, pki.client_cert_pem, pki.client_key_pem) == {}
    assert set(outbound.tls_problems("not a certificate")) == {"ca_bundle"}
    assert set(outbound.tls_problems(None, pki.client_cert_pem, None)) == {"client_key"}
    assert set(outbound.tls_problems(None, None, pki.client_key_pem)) == {"client_certificate"}
    assert set(outbound.tls_problems(None, pki.client_cert_pem, other.client_key_pem)) == {"client_key"}
    assert set(outbound.tls_problems(None, pki.client_key_pem, pki.client_cert_pem)) == {"client_certificate"}
    both = pki.client_cert_pem + pki.client_key_pem
    assert set(outbound.tls_problems(None, both, pki.client_key_pem)) == {"client_certificate"}


def test_a_key_under_a_passphrase_is_refused_without_a_prompt(pki):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client_key_pem.encode(), password=None)
    locked = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.BestAvailableEncryption(b"passphrase")).decode()
    assert set(outbound.tls_problems(None, pki.client_cert_pem, locked)) == {"client_key"}
    with pytest.raises(outbound.OutboundError):
        transport.tls_context(None, pki.client_cert_pem, locked)
