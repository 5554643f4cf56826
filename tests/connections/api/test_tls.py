"""TLS per integration through the API: a CA bundle in ``settings.tls``, a client certificate and key on
the credential (mutual TLS), against a real local HTTPS server that requires a client certificate."""
import pytest
from django.db import connection
from pytest_httpserver import HTTPServer

from audit.models import AuditEvent
from connections.models import Credential, Integration
from tenants.choices import Role
from tests.helpers import assert_error
from tests.pki import make_pki, server_context

URL = "/api/v1/integrations/"
TOKEN = "tok_live_mtls_secret_000123"


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "::1", "localhost"]


@pytest.fixture(scope="module")
def pki():
    return make_pki("localhost")


@pytest.fixture
def api(client_for):
    return client_for(Role.TENANT_ADMIN.value)


@pytest.fixture
def mtls_server(pki):
    """HTTPS on localhost with ``pki``'s certificate, answering only clients that ``pki``'s CA signed."""
    server = HTTPServer(host="localhost", port=0, ssl_context=server_context(pki, client_ca=pki.ca_pem))
    server.start()
    server.expect_request("/ping").respond_with_json({"ok": True})
    server.expect_request("/statuses").respond_with_json([{"id": "a1", "status": "open"}])
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def far(integration, mtls_server):
    Integration.objects.filter(pk=integration.pk).update(
        api_base_url=mtls_server.url_for("/").rstrip("/"), test_endpoint="/ping", status_endpoint="/statuses",
        retry_count=0, timeout_seconds=5,
    )
    integration.refresh_from_db()
    return integration


def put_credentials(api, integration, **fields):
    return api.put(f"{URL}{integration.pk}/credentials", {"type": "bearer", "token": TOKEN, **fields},
                   format="json")


def set_ca_bundle(api, integration, bundle):
    return api.patch(f"{URL}{integration.pk}/", {"settings": {"tls": {"ca_bundle": bundle}}},
                     format="json")


def test_the_ca_bundle_and_client_certificate_reach_a_server_that_requires_them(api, far, pki, mtls_server):
    assert set_ca_bundle(api, far, pki.ca_pem).status_code == 200
    answer = put_credentials(api, far, client_certificate=pki.client_cert_pem, client_key=pki.client_key_pem)
    assert answer.status_code == 200, answer.content
    assert answer.json()["has_client_certificate"] is True
    assert "client_key" not in answer.content.decode() and "PRIVATE KEY" not in answer.content.decode()

    response = api.post(f"{URL}{far.pk}/test")

    assert response.status_code == 200, response.content
    assert response.json()["success"] is True, response.json()
    assert [entry[0].path for entry in mtls_server.log] == ["/ping"]
    assert mtls_server.log[0][0].headers["Authorization"] == f"Bearer {TOKEN}"
    poll = api.post(f"{URL}{far.pk}/poll")
    assert poll.status_code == 200 and poll.json()["seen"] == 1, poll.content


def test_without_the_client_certificate_the_server_refuses_the_handshake(api, far, pki, mtls_server):
    set_ca_bundle(api, far, pki.ca_pem)
    put_credentials(api, far)

    body = api.post(f"{URL}{far.pk}/test").json()

    assert body["success"] is False and body["error"]["code"] == "CONNECTION_FAILED"
    assert mtls_server.log == []


def test_without_the_ca_bundle_the_servers_certificate_is_not_trusted(api, far, pki, mtls_server):
    put_credentials(api, far, client_certificate=pki.client_cert_pem, client_key=pki.client_key_pem)

    body = api.post(f"{URL}{far.pk}/test").json()

    assert body["success"] is False and body["error"]["code"] == "CONNECTION_FAILED"
    assert "TLS" in body["error"]["message"]
    assert mtls_server.log == []


def test_the_client_key_is_stored_encrypted_and_audited_by_name(api, far, pki):
    put_credentials(api, far, client_certificate=pki.client_cert_pem, client_key=pki.client_key_pem)

    credential = Credential.objects.get(integration=far)
    assert credential.payload["client_key"] == pki.client_key_pem
    assert credential.public_fields["client_certificate"] == pki.client_cert_pem
    key = Credential._meta.pk.get_db_prep_value(credential.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT payload FROM {Credential._meta.db_table} WHERE id = %s", [key])
        stored = str(cursor.fetchone()[0])
    assert "PRIVATE KEY" not in stored and TOKEN not in stored
    event = AuditEvent.objects.filter(action="credential.set").latest("created_at")
    assert event.changes["client_key"] == "[redacted]" and event.changes["client_certificate"] == "set"
    assert "BEGIN" not in str(event.changes)
    assert credential.hint == TOKEN[-4:]


def test_patch_removes_the_client_certificate(api, far, pki):
    put_credentials(api, far, client_certificate=pki.client_cert_pem, client_key=pki.client_key_pem)

    response = api.patch(f"{URL}{far.pk}/credentials", {"client_certificate": None, "client_key": None},
                         format="json")

    assert response.status_code == 200, response.content
    credential = Credential.objects.get(integration=far)
    assert "client_key" not in credential.payload and "client_certificate" not in credential.public_fields
    assert credential.payload["token"] == TOKEN
    assert api.get(f"{URL}{far.pk}/connection").json()["has_client_certificate"] is False


def test_custom_credentials_take_the_client_certificate_beside_their_fields(api, far, pki):
    response = api.put(f"{URL}{far.pk}/credentials", {
        "type": "custom", "fields": {"secret_one": "value_of_the_first_secret"},
        "client_certificate": pki.client_cert_pem, "client_key": pki.client_key_pem,
    }, format="json")

    assert response.status_code == 200, response.content
    credential = Credential.objects.get(integration=far)
    assert set(credential.payload) == {"secret_one", "client_key"}
    assert credential.hint == "cret"


def _locked_key(pki) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client_key_pem.encode(), password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"passphrase")).decode()


@pytest.mark.parametrize(("fields", "field"), [
    ({"client_certificate": "CERT"}, "client_key"),
    ({"client_key": "KEY"}, "client_certificate"),
    ({"client_certificate": "not pem", "client_key": "not pem either"}, "client_key"),
    ({"client_certificate": "x" * 70000, "client_key": "k"}, "client_certificate"),
    ({"client_certificate": ["PEM"], "client_key": "k"}, "client_certificate"),
])
def test_unusable_client_certificates_are_refused_and_nothing_changes(api, far, pki, fields, field):
    put_credentials(api, far)
    before = Credential.objects.get(integration=far).version

    response = put_credentials(api, far, **fields)

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert field in error["details"], error
    assert Credential.objects.get(integration=far).version == before
    assert "k" * 20 not in response.content.decode()


def test_a_key_that_is_not_the_certificates_own_or_is_locked_is_refused(api, far, pki):
    other = make_pki("localhost")
    for key in (other.client_key_pem, _locked_key(pki)):
        response = put_credentials(api, far, client_certificate=pki.client_cert_pem, client_key=key)
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert "client_key" in error["details"]
        assert "PRIVATE KEY" not in response.content.decode()
    assert not Credential.objects.filter(integration=far).exists()


@pytest.mark.parametrize("tls", [
    {"ca_bundle": "not a certificate"},
    {"ca_bundle": 12},
    {"ca_bundle": "-----BEGIN CERTIFICATE-----\n" + "A" * 70000},
    {"verify": False},
    "off",
])
def test_an_unusable_tls_setting_is_refused_and_the_settings_are_kept(api, far, pki, tls):
    set_ca_bundle(api, far, pki.ca_pem)

    response = api.patch(f"{URL}{far.pk}/", {"settings": {"tls": tls}}, format="json")

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "settings" in error["details"], error
    far.refresh_from_db()
    assert far.settings == {"tls": {"ca_bundle": pki.ca_pem}}
