"""Auth headers (connections.adapters): what each credential type sends, and that it reaches a server."""
import base64

import pytest

from catalog.models import IntegrationProvider
from connections.adapters import auth_headers
from connections.models import Credential
from integrations_site import outbound

SECRET = "s3cr3t-token-value"


@pytest.fixture
def allow_local(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    return settings


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
    response = outbound.request("GET", httpserver.url_for("/ping"), headers=auth_headers(cred, PROVIDER))
    assert response.status_code == 200
