"""A stream whose OAuth2 access token expired: one refresh after the 401, and the stream reads on."""
import pytest

from connections.models import Credential, ExternalStatus, Integration
from tests.connections.oauth_server import (  # noqa: F401 (fixtures, known by their names)
    connect,
    oauth_integration_fixture,
    oauth_provider_fixture,
    oauth_server_fixture,
)
from tests.connections.streams.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_401_refreshes_the_oauth2_token_once_and_reconnects(
        admin_client_api, oauth_integration, oauth_server, sse_server, consumers):
    connect(admin_client_api, oauth_integration, oauth_server)
    old_token = Credential.objects.get(integration=oauth_integration).payload["access_token"]
    oauth_server.expire_access_tokens()

    def live_bearer(headers) -> bool:
        value = headers.get("Authorization", "")
        return value.startswith("Bearer ") and oauth_server.access_token_is_live(value[7:])

    sse_server.feed("/oauth-feed", authorized=live_bearer)
    Integration.objects.filter(pk=oauth_integration.pk).update(
        update_method="sse", status="connected", api_base_url=sse_server.url(), stream_endpoint="/oauth-feed")
    consumers()
    sse_server.publish("/oauth-feed", {"id": "a", "status": "open"}, id="1")
    wait_for(lambda: ExternalStatus.objects.filter(integration=oauth_integration).exists(), what="the event applied")
    assert len(oauth_server.refresh_calls()) == 1
    new_token = Credential.objects.get(integration=oauth_integration).payload["access_token"]
    assert new_token != old_token
    tried = [c["headers"].get("Authorization") for c in sse_server.connections_to("/oauth-feed")]
    assert tried == [f"Bearer {old_token}", f"Bearer {new_token}"]
