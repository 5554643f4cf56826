"""Provider catalog: super-admin management, the tenant catalog, and plan gating."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from catalog.models import IntegrationProvider
from connections.models import Integration
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.helpers import assert_error, raw_value

ADMIN_URL = "/api/v1/admin/providers/"
CATALOG_URL = "/api/v1/catalog/"


@pytest.fixture
def sa(client_for):
    return client_for("super_admin")


def slugs(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["slug"] for row in response.json()["results"]}


# --- admin providers ---------------------------------------------------------

def test_super_admin_creates_a_provider(sa, db):
    body = {
        "slug": "stripe", "name": "Stripe", "description": "Payments", "category": "payment_gateway",
        "status": "beta", "audience": "tenant", "auth_type": "bearer", "capabilities": ["charges", "refunds"],
        "supports_webhooks": True, "default_api_base_url": "https://api.stripe.com",
        "default_test_endpoint": "/v1/balance", "default_status_mapping": {"available": ["succeeded"]},
        "default_webhook_signature_scheme": "stripe", "is_premium": True,
    }
    response = sa.post(ADMIN_URL, body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["slug"] == "stripe"
    assert data["display_name"] == "Stripe"  # defaults to the name
    assert data["status"] == "beta" and data["audience"] == "tenant" and data["is_premium"] is True
    assert data["capabilities"] == ["charges", "refunds"]
    provider = IntegrationProvider.objects.get(slug="stripe")
    assert provider.default_status_mapping == {"available": ["succeeded"]}
    event = AuditEvent.objects.get(action="provider.created")
    assert event.target_id == str(provider.pk) and event.tenant is None and event.actor == "root"

    detail = sa.get(f"{ADMIN_URL}stripe/")
    assert detail.status_code == 200 and detail.json()["id"] == str(provider.pk)


def test_oauth_client_secret_is_write_only_and_encrypted(sa, db):
    body = {
        "slug": "hubspot", "name": "HubSpot", "category": "crm", "auth_type": "oauth2",
        "oauth_config": {"authorize_url": "https://app.hubspot.com/oauth/authorize",
                         "token_url": "https://api.hubapi.com/oauth/v1/token", "client_id": "cid-1",
                         "client_secret": "hubspot-client-secret-xyz", "scopes": ["crm.objects.contacts.read"],
                         "pkce": True},
    }
    response = sa.post(ADMIN_URL, body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["has_oauth_client_secret"] is True
    assert "client_secret" not in data["oauth_config"]
    assert data["oauth_config"]["client_id"] == "cid-1"

    provider = IntegrationProvider.objects.get(slug="hubspot")
    assert provider.oauth_client_secret == "hubspot-client-secret-xyz"
    assert "hubspot-client-secret-xyz" not in raw_value(IntegrationProvider, "oauth_client_secret", provider.pk)
    event = AuditEvent.objects.get(action="provider.created")
    assert "hubspot-client-secret-xyz" not in str(event.changes)
    assert "client_secret" not in str(event.changes["oauth_config"])


@pytest.mark.parametrize(
    "body, field",
    [
        ({"slug": "x", "name": "X", "category": "toys"}, "category"),
        ({"slug": "x", "name": "X", "status": "live"}, "status"),
        ({"slug": "x", "name": "X", "audience": "everyone"}, "audience"),
        ({"slug": "x", "name": "X", "auth_type": "magic"}, "auth_type"),
        ({"slug": "not a slug", "name": "X"}, "slug"),
        ({"name": "X"}, "slug"),
        ({"slug": "x", "name": "X", "default_api_base_url": "ftp://files.example.com"}, "default_api_base_url"),
        ({"slug": "x", "name": "X", "default_status_mapping": {"sold_out": ["x"]}}, "default_status_mapping"),
        ({"slug": "x", "name": "X", "capabilities": "charges"}, "capabilities"),
        ({"slug": "x", "name": "X", "oauth_config": {"authorize_url": "javascript:alert(1)"}}, "oauth_config"),
        ({"slug": "x", "name": "X", "oauth_config": {"authorize_url": 5}}, "oauth_config"),
        ({"slug": "x", "name": "X", "oauth_config": {"token_url": False}}, "oauth_config"),
        ({"slug": "x", "name": "X", "oauth_config": {"client_id": ["a"]}}, "oauth_config"),
        ({"slug": "x", "name": "X", "required_plan": "gold"}, "required_plan"),
        ({"slug": "x", "name": "X", "credential_fields": [{"label": "no name"}]}, "credential_fields"),
        ({"slug": "x", "name": "X", "id": "00000000-0000-0000-0000-000000000000"}, "id"),
        ({"slug": "x", "name": "X", "oauth_client_secret": "s3cr3t-value"}, "oauth_client_secret"),
        ({"slug": "x", "name": "X", "search_config": {"endpoint": "https://evil.example.com/s"}}, "search_config"),
        ({"slug": "x", "name": "X", "search_config": {"endpoint": "/a/../../admin"}}, "search_config"),
        ({"slug": "x", "name": "X", "search_config": {"endpoint": "//evil.example.com/s"}}, "search_config"),
        ({"slug": "x", "name": "X", "search_config": {"verb": "GET"}}, "search_config"),
        ({"slug": "x", "name": "X", "search_config": {"method": "DELETE"}}, "search_config"),
        ({"slug": "x", "name": "X", "search_config": {"query_param": ""}}, "search_config"),
        ({"slug": "x", "name": "X", "search_config": {"items_path": "data..items"}}, "search_config"),
        ({"slug": "x", "name": "X", "search_config": {"fields": {"headline": "title"}}}, "search_config"),
        ({"slug": "x", "name": "X", "search_config": {"fields": {"title": "a b"}}}, "search_config"),
        ({"slug": "x", "name": "X", "search_config": ["/search"]}, "search_config"),
        ({"slug": "x", "name": "X", "entity_config": {"Account": {"items_path": "data"}}}, "entity_config"),
        ({"slug": "x", "name": "X", "entity_config": {"Account": {"endpoint": "/a", "fields": []}}}, "entity_config"),
        ({"slug": "x", "name": "X", "entity_config": {"Account": {"endpoint": "/a", "fields": ["id"],
                                                                  "sort": "name"}}}, "entity_config"),
        ({"slug": "x", "name": "X", "entity_config": {"Account": {"endpoint": "/a", "fields": ["id"],
                                                                  "filter_params": ["a b"]}}}, "entity_config"),
    ],
)
def test_provider_bad_input_is_400_naming_the_field(sa, db, body, field):
    error = assert_error(sa.post(ADMIN_URL, body, format="json"), 400, "VALIDATION_ERROR")
    assert field in error["details"]
    assert not IntegrationProvider.objects.exists()


def test_duplicate_provider_slug_is_409(sa, provider):
    error = assert_error(sa.post(ADMIN_URL, {"slug": provider.slug, "name": "Again"}, format="json"), 409, "CONFLICT")
    assert error["details"]["slug"] == provider.slug
    assert IntegrationProvider.objects.count() == 1


def test_unknown_provider_slug_is_404_provider_not_found(sa, db):
    assert_error(sa.get(f"{ADMIN_URL}no-such/"), 404, "PROVIDER_NOT_FOUND")
    assert_error(sa.patch(f"{ADMIN_URL}no-such/status", {"status": "beta"}, format="json"), 404, "PROVIDER_NOT_FOUND")
    assert_error(sa.delete(f"{ADMIN_URL}no-such/"), 404, "PROVIDER_NOT_FOUND")


def test_super_admin_updates_a_provider(sa, provider):
    response = sa.patch(f"{ADMIN_URL}{provider.slug}/", {"description": "Any REST API", "color": "#123456"},
                        format="json")
    assert response.status_code == 200, response.content
    provider.refresh_from_db()
    assert provider.description == "Any REST API"
    event = AuditEvent.objects.get(action="provider.updated")
    assert set(event.changes) == {"description", "color"}


def test_status_and_audience_actions(sa, provider):
    response = sa.patch(f"{ADMIN_URL}{provider.slug}/status", {"status": "deprecated"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "deprecated"
    # The contract's path has no trailing slash; the slash form is served too.
    response = sa.patch(f"{ADMIN_URL}{provider.slug}/audience/", {"audience": "system"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["audience"] == "system"
    provider.refresh_from_db()
    assert (provider.status, provider.audience) == ("deprecated", "system")
    status_event = AuditEvent.objects.get(action="provider.status_changed")
    assert status_event.changes == {"status": {"from": "active", "to": "deprecated"}}
    audience_event = AuditEvent.objects.get(action="provider.audience_changed")
    assert audience_event.changes == {"audience": {"from": "tenant", "to": "system"}}


@pytest.mark.parametrize(
    "suffix, body, field",
    [
        ("status", {"status": "gone"}, "status"),
        ("status", {}, "status"),
        ("status", {"status": "beta", "audience": "system"}, "audience"),
        ("audience", {"audience": "public"}, "audience"),
    ],
)
def test_status_and_audience_bad_input_is_400(sa, provider, suffix, body, field):
    error = assert_error(sa.patch(f"{ADMIN_URL}{provider.slug}/{suffix}", body, format="json"), 400,
                         "VALIDATION_ERROR")
    assert field in error["details"]
    provider.refresh_from_db()
    assert (provider.status, provider.audience) == ("active", "tenant")


def test_provider_with_live_integrations_cannot_be_deleted_but_can_be_disabled(sa, integration, provider):
    error = assert_error(sa.delete(f"{ADMIN_URL}{provider.slug}/"), 409, "CONFLICT")
    assert error["details"] == {"live_integrations": 1}
    assert IntegrationProvider.objects.filter(pk=provider.pk).exists()
    assert not AuditEvent.objects.filter(action="provider.deleted").exists()

    response = sa.patch(f"{ADMIN_URL}{provider.slug}/status", {"status": "disabled"}, format="json")
    assert response.status_code == 200
    assert Integration.objects.filter(pk=integration.pk).exists()


def test_provider_whose_integrations_are_all_soft_deleted_can_be_deleted(sa, client_for, integration, provider):
    assert client_for("tenant_admin").delete(f"/api/v1/integrations/{integration.pk}/").status_code == 204
    assert sa.delete(f"{ADMIN_URL}{provider.slug}/").status_code == 204
    assert not IntegrationProvider.objects.filter(pk=provider.pk).exists()
    assert AuditEvent.objects.filter(action="provider.deleted", target_id=str(provider.pk)).count() == 1


def test_admin_provider_filters_and_search(sa, db):
    ProviderFactory(slug="stripe", name="Stripe", category="payment_gateway", status="active", audience="tenant")
    ProviderFactory(slug="twilio", name="Twilio", category="sms_provider", status="beta", audience="tenant",
                    description="SMS and voice")
    ProviderFactory(slug="internal", name="Internal Ping", category="custom", status="disabled", audience="system")
    assert slugs(sa.get(ADMIN_URL)) == {"stripe", "twilio", "internal"}  # admins see everything
    assert slugs(sa.get(f"{ADMIN_URL}?category=sms_provider")) == {"twilio"}
    assert slugs(sa.get(f"{ADMIN_URL}?status=disabled")) == {"internal"}
    assert slugs(sa.get(f"{ADMIN_URL}?audience=system")) == {"internal"}
    assert slugs(sa.get(f"{ADMIN_URL}?search=voice")) == {"twilio"}
    assert slugs(sa.get(f"{ADMIN_URL}?search=STRI")) == {"stripe"}
    ordered = sa.get(f"{ADMIN_URL}?ordering=-name").json()["results"]
    assert [row["slug"] for row in ordered] == ["twilio", "stripe", "internal"]
    error = assert_error(sa.get(f"{ADMIN_URL}?category=toys"), 400, "VALIDATION_ERROR")
    assert "category" in error["details"]


@pytest.mark.parametrize("role", ["tenant_admin", "integration_manager", "member", "other_tenant"])
def test_tenant_users_cannot_change_the_catalog(client_for, provider, role):
    client = client_for(role)
    assert_error(client.patch(f"{ADMIN_URL}{provider.slug}/status", {"status": "disabled"}, format="json"),
                 403, "PERMISSION_DENIED")
    assert_error(client.delete(f"{ADMIN_URL}{provider.slug}/"), 403, "PERMISSION_DENIED")
    provider.refresh_from_db()
    assert provider.status == "active"


# --- tenant catalog ----------------------------------------------------------

@pytest.fixture
def catalog(db):
    return {
        "active": ProviderFactory(slug="slack", name="Slack", category="communication", status="active"),
        "beta": ProviderFactory(slug="sendgrid", name="SendGrid", category="email_provider", status="beta",
                                description="Transactional email"),
        "deprecated": ProviderFactory(slug="old-crm", name="Old CRM", status="deprecated"),
        "disabled": ProviderFactory(slug="dead", name="Dead", status="disabled"),
        "system": ProviderFactory(slug="probe", name="Probe", status="active", audience="system"),
    }


def test_catalog_shows_tenant_providers_that_are_active_or_beta(client_for, catalog):
    assert slugs(client_for("member").get(CATALOG_URL)) == {"slack", "sendgrid"}


@pytest.mark.parametrize("hidden", ["old-crm", "dead", "probe"])
def test_hidden_provider_is_404_in_the_catalog(client_for, catalog, hidden):
    assert_error(client_for("member").get(f"{CATALOG_URL}{hidden}/"), 404, "PROVIDER_NOT_FOUND")


def test_catalog_detail_hides_admin_only_fields(client_for, db):
    ProviderFactory(slug="gh", name="GitHub", auth_type="oauth2", oauth_client_secret="gh-client-secret-1",
                    oauth_config={"client_id": "gh-id", "token_url": "https://github.com/login/oauth/access_token"},
                    is_premium=True)
    response = client_for("member").get(f"{CATALOG_URL}gh/")
    assert response.status_code == 200
    body = response.json()
    assert "oauth_config" not in body and "audience" not in body and "has_oauth_client_secret" not in body
    assert "gh-id" not in response.content.decode()
    assert body["minimum_plan"] == "pro"


def test_catalog_filters_and_search(client_for, catalog):
    client = client_for("member")
    assert slugs(client.get(f"{CATALOG_URL}?category=email_provider")) == {"sendgrid"}
    assert slugs(client.get(f"{CATALOG_URL}?search=transactional")) == {"sendgrid"}
    assert slugs(client.get(f"{CATALOG_URL}?search=sla")) == {"slack"}
    assert slugs(client.get(f"{CATALOG_URL}?status=beta")) == {"sendgrid"}
    # Filtering on a hidden status cannot reveal hidden providers.
    assert slugs(client.get(f"{CATALOG_URL}?status=active")) == {"slack"}
    assert slugs(client.get(f"{CATALOG_URL}?search=probe")) == set()
    assert slugs(client.get(f"{CATALOG_URL}?audience=system")) == {"slack", "sendgrid"}  # not a catalog filter


def test_catalog_reflects_status_and_audience_changes(sa, client_for, catalog):
    member = client_for("member")
    assert sa.patch(f"{ADMIN_URL}slack/status", {"status": "disabled"}, format="json").status_code == 200
    assert sa.patch(f"{ADMIN_URL}probe/audience", {"audience": "tenant"}, format="json").status_code == 200
    assert slugs(member.get(CATALOG_URL)) == {"sendgrid", "probe"}


def test_catalog_pagination_envelope(client_for, db):
    for n in range(7):
        ProviderFactory(slug=f"p{n}", name=f"P{n}")
    body = client_for("member").get(f"{CATALOG_URL}?limit=3&offset=3").json()
    assert body["total"] == 7 and body["limit"] == 3 and body["offset"] == 3
    assert body["has_more"] is True and body["next_offset"] == 6
    assert [row["slug"] for row in body["results"]] == ["p3", "p4", "p5"]


def test_anonymous_cannot_read_the_catalog(client, catalog):
    assert_error(client.get(CATALOG_URL), 401, "NOT_AUTHENTICATED")


# --- plan gating -------------------------------------------------------------

def _on_plan(tenant, plan):
    tenant.plan = plan
    tenant.save()


@pytest.mark.parametrize(
    "provider_kwargs, needed",
    [
        ({"is_premium": True}, "pro"),
        ({"required_plan": "pro"}, "pro"),
        ({"required_plan": "starter"}, "starter"),
        ({"is_premium": True, "required_plan": "enterprise"}, "enterprise"),
    ],
)
def test_free_tenant_cannot_create_an_integration_of_a_gated_provider(client_for, tenant, provider_kwargs, needed):
    _on_plan(tenant, "free")
    gated = ProviderFactory(slug="gated", name="Gated", **provider_kwargs)
    response = client_for("tenant_admin").post("/api/v1/integrations/", {"provider": gated.slug, "name": "Try"},
                                               format="json")
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert error["details"]["required_plan"] == needed
    assert error["details"]["current_plan"] == "free"
    assert needed in error["message"]
    assert not Integration.objects.exists()
    assert not AuditEvent.objects.exists()


def test_plan_high_enough_may_create_a_gated_integration(client_for, tenant):
    _on_plan(tenant, "pro")
    gated = ProviderFactory(slug="gated", name="Gated", is_premium=True)
    response = client_for("tenant_admin").post("/api/v1/integrations/", {"provider": gated.slug, "name": "Ok"},
                                               format="json")
    assert response.status_code == 201, response.content


def test_free_tenant_may_create_an_ungated_integration(client_for, tenant, provider):
    _on_plan(tenant, "free")
    response = client_for("integration_manager").post(
        "/api/v1/integrations/", {"provider": provider.slug, "name": "Free"}, format="json"
    )
    assert response.status_code == 201, response.content


def test_downgraded_tenant_cannot_re_enable_a_gated_integration(client_for, tenant):
    gated = ProviderFactory(slug="gated", name="Gated", required_plan="enterprise")
    _on_plan(tenant, "enterprise")
    existing = IntegrationFactory(tenant=tenant, provider=gated, name="Gated one", status="disabled")
    _on_plan(tenant, "starter")
    error = assert_error(client_for("tenant_admin").post(f"/api/v1/integrations/{existing.pk}/enable"),
                         403, "PERMISSION_DENIED")
    assert error["details"]["required_plan"] == "enterprise"
    existing.refresh_from_db()
    assert existing.status == "disabled"


def test_catalog_shows_the_minimum_plan(client_for, db):
    ProviderFactory(slug="free-one", name="Free")
    ProviderFactory(slug="premium-one", name="Premium", is_premium=True)
    ProviderFactory(slug="starter-one", name="Starter", required_plan="starter")
    rows = {r["slug"]: r["minimum_plan"] for r in client_for("member").get(CATALOG_URL).json()["results"]}
    assert rows == {"free-one": "free", "premium-one": "pro", "starter-one": "starter"}


def test_creating_an_integration_of_a_provider_outside_the_catalog_is_404(client_for, catalog):
    client = client_for("tenant_admin")
    for slug in ("dead", "probe", "old-crm", "never-existed"):
        error = assert_error(client.post("/api/v1/integrations/", {"provider": slug, "name": slug}, format="json"),
                             404, "PROVIDER_NOT_FOUND")
        assert error["details"]["provider"] == slug
    assert not Integration.objects.exists()


# --- query counts ------------------------------------------------------------

def _count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url, role", [(ADMIN_URL, "super_admin"), (CATALOG_URL, "member")])
def test_provider_lists_run_the_same_queries_for_5_and_50_rows(client_for, db, url, role):
    client = client_for(role)
    ProviderFactory.create_batch(5, oauth_config={"client_id": "x"}, capabilities=["a"])
    few = _count_queries(client, url)
    ProviderFactory.create_batch(45, oauth_config={"client_id": "x"}, capabilities=["a"])
    assert client.get(url).json()["total"] == 50
    assert _count_queries(client, url) == few


def test_search_and_entity_config_are_stored_shown_to_staff_and_not_in_the_tenant_catalog(sa, client_for, db):
    search = {"endpoint": "/v1/search", "method": "POST", "query_param": "query", "items_path": "data.hits",
              "fields": {"title": "properties.name", "updated_at": "meta.modified"}}
    entities = {"Account": {"endpoint": "/v1/accounts", "items_path": "data", "total_path": "meta.total",
                            "fields": ["id", "name", "owner.email"], "filter_params": ["status"]}}
    body = {"slug": "searchy", "name": "Searchy", "supports_search": True, "search_config": search,
            "entity_config": entities}
    created = sa.post(ADMIN_URL, body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["search_config"] == search and created.json()["entity_config"] == entities
    provider = IntegrationProvider.objects.get(slug="searchy")
    assert provider.search_config == search and provider.entity_config == entities
    changed = sa.patch(f"{ADMIN_URL}searchy/", {"search_config": {"endpoint": "/v2/search"}}, format="json")
    assert changed.status_code == 200 and changed.json()["search_config"] == {"endpoint": "/v2/search"}
    catalog = client_for("tenant_admin").get(f"{CATALOG_URL}searchy/")
    assert catalog.status_code == 200 and "search_config" not in catalog.json()
