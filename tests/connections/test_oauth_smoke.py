"""The OAuth2 connect flow end to end against a local authorization server."""
import base64
import hashlib
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug import Response

from connections.models import Credential
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory


@pytest.fixture
def oauth_integration(tenant, httpserver, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    tenant.allowed_return_hosts = ["app.example.com"]
    tenant.save()
    provider = ProviderFactory(
        slug="crm-oauth", auth_type="oauth2", oauth_client_secret="client-secret-value-123",
        oauth_config={"authorize_url": "https://auth.example.com/authorize", "token_url": httpserver.url_for("/token"),
                      "client_id": "client-1", "scopes": ["read", "write"]},
    )
    return IntegrationFactory(tenant=tenant, provider=provider, name="CRM", api_base_url=httpserver.url_for("/"))


def test_connect_flow_exchanges_the_code_with_pkce_and_redirects(admin_client_api, client, oauth_integration,
                                                                  httpserver):
    started = admin_client_api.post(f"/api/v1/integrations/{oauth_integration.pk}/connect/oauth",
                                    {"return_url": "https://app.example.com/done?x=1"}, format="json")
    assert started.status_code == 200, started.content
    query = parse_qs(urlsplit(started.json()["authorization_url"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"] == [started.json()["state"]]
    seen = {}

    def token(request):
        form = parse_qs(request.get_data(as_text=True))
        verifier = form["code_verifier"][0]
        digest = hashlib.sha256(verifier.encode()).digest()
        seen["challenge_ok"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"][0]
        seen["auth"] = request.headers.get("Authorization")
        return Response(json.dumps({"access_token": "at-0123456789abcdef", "refresh_token": "rt-0123456789abcdef",
                                    "expires_in": 3600, "token_type": "Bearer", "scope": "read write"}),
                        content_type="application/json")

    httpserver.expect_request("/token", method="POST").respond_with_handler(token)
    callback = client.get("/api/v1/oauth/callback", {"state": query["state"][0], "code": "the-code"})
    assert callback.status_code == 302, callback.content
    assert callback["Location"] == "https://app.example.com/done?x=1&status=connected"
    assert seen["challenge_ok"] and seen["auth"].startswith("Basic ")
    credential = Credential.objects.get(integration=oauth_integration)
    assert credential.payload["refresh_token"] == "rt-0123456789abcdef" and credential.status == "active"
    replay = client.get("/api/v1/oauth/callback", {"state": query["state"][0], "code": "the-code"})
    assert replay.status_code == 400 and b"already used" in replay.content
