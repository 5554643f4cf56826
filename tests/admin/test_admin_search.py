"""Search settings of providers in the admin, and the "Try search" page of an integration (a real local upstream)."""
import pytest

from audit.services import SYSTEM
from catalog.models import IntegrationProvider
from connections.services import credential_set
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.tenants.factories import UserFactory


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


@pytest.fixture
def searched(tenant, httpserver):
    provider = ProviderFactory(slug="finder", name="Finder", auth_type="bearer", supports_search=True,
                               search_config={"items_path": "hits"})
    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Finder CRM", search_enabled=True,
                                     api_base_url=httpserver.url_for("/").rstrip("/"), retry_count=0)
    credential_set(actor=SYSTEM, integration=integration, credential_type="bearer", data={"token": "tok-admin-1"})
    return integration


def page(integration, **query):
    from urllib.parse import urlencode

    return f"/admin/connections/integration/{integration.pk}/try-search/?{urlencode(query)}"


def test_the_change_page_links_to_try_search_which_shows_the_mapped_results(staff_client, searched, httpserver):
    httpserver.expect_request("/search", query_string={"q": "ada", "limit": "5"}).respond_with_json({"hits": [
        {"id": "c1", "name": "Ada Lovelace", "description": "Mathematician", "type": "contact", "score": 0.9,
         "url": "https://crm.example.com/c1", "updated_at": "2026-01-02T00:00:00Z"},
        {"id": "c2", "name": "Ada Byron", "type": "contact", "score": 0.4}]})
    change = staff_client.get(f"/admin/connections/integration/{searched.pk}/change/")
    assert change.status_code == 200 and page(searched).split("?")[0].encode() in change.content
    empty = staff_client.get(page(searched))
    assert empty.status_code == 200 and b'name="query"' in empty.content and b"search-results" not in empty.content
    shown = staff_client.get(page(searched, query="ada", limit=5))
    html = shown.content.decode()
    assert shown.status_code == 200 and "search-results" in html
    assert html.index("Ada Lovelace") < html.index("Ada Byron")  # by score
    assert "Mathematician" in html and "https://crm.example.com/c1" in html and "2 results of 2" in html
    assert "tok-admin-1" not in html


def test_try_search_shows_an_upstream_failure_as_its_code(staff_client, searched, httpserver):
    httpserver.expect_request("/search").respond_with_data("no", status=401)
    html = staff_client.get(page(searched, query="ada")).content.decode()
    assert "INVALID_CREDENTIALS" in html and "errornote" in html


def test_try_search_needs_a_staff_user_allowed_to_change_integrations(client, searched, db):
    assert client.get(page(searched, query="ada")).status_code == 302  # to the login page
    viewer = UserFactory(username="viewer", is_staff=True)
    client.force_login(viewer)
    assert client.get(page(searched, query="ada")).status_code == 403


def test_the_try_search_action_opens_the_page_of_one_selected_integration(staff_client, searched):
    answer = staff_client.post("/admin/connections/integration/", {
        "action": "try_search", "_selected_action": [str(searched.pk)]})
    assert answer.status_code == 302 and answer["Location"] == page(searched).split("?")[0]


def test_provider_search_settings_are_validated_in_the_admin(staff_client, db):
    provider = ProviderFactory(slug="cfg", name="Cfg")
    form = staff_client.get(f"/admin/catalog/integrationprovider/{provider.pk}/change/")
    assert b"Search and widget data" in form.content and b'name="search_config"' in form.content
    from django.forms.models import model_to_dict

    data = {k: v for k, v in model_to_dict(provider).items() if v is not None and k not in ("id",)}
    import json

    for key in ("capabilities", "supported_sync_directions", "searchable_entities", "available_entities",
                "credential_fields", "default_status_mapping", "oauth_config", "entity_config"):
        data[key] = json.dumps(data.get(key) or ([] if key not in ("default_status_mapping", "oauth_config",
                                                                    "entity_config") else {}))
    data["search_config"] = json.dumps({"endpoint": "https://elsewhere.example.com/search"})
    refused = staff_client.post(f"/admin/catalog/integrationprovider/{provider.pk}/change/", data)
    assert refused.status_code == 200 and b"relative to the base URL" in refused.content
    assert IntegrationProvider.objects.get(pk=provider.pk).search_config == {}
