"""seed_demo: idempotent, pointed at the demo upstream; and, against a running upstream, the seeded
integrations connect, their statuses change when polled, and the OAuth demo connect flow completes."""
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client as DjangoClient
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.services import SYSTEM
from catalog.choices import CanonicalStatus
from catalog.models import IntegrationProvider
from connections.models import ConfigVersion, ConnectionCheck, Credential, ExternalStatus, Integration, StatusChange
from connections.services import connection_test_run, integration_create, status_poll
from demo.management.commands.seed_demo import DEFAULT_PASSWORD, DEMO_INTEGRATION, PROVIDERS, demo_providers
from demo.upstream import CLIENT_SECRET, INVENTORY_API_KEY, UNKNOWN_STATUS
from notifications.choices import EVENT_TYPES
from notifications.models import NotificationEndpoint
from tenants.authentication import hash_api_key
from tenants.models import ApiKey, Membership, Tenant
from tenants.services import tenant_create
from tests.conftest import STORED_SECRETS
from tests.helpers import raw_value
from webhooks.models import WebhookEndpoint

from .conftest import ROTATE_EVERY, approve, bearer, call

pytestmark = pytest.mark.django_db

UPSTREAM = "http://127.0.0.1:18001"
HUB = "http://127.0.0.1:18000"
DEMO_SLUGS = {"demo-payments", "demo-shipping", "demo-crm"}
COUNTED = (IntegrationProvider, Tenant, get_user_model(), Membership, Integration, Credential, ConfigVersion,
           WebhookEndpoint, NotificationEndpoint, ApiKey, AuditEvent, ConnectionCheck)


@pytest.fixture(autouse=True)
def demo_env(monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    monkeypatch.setenv("DEMO_UPSTREAM_URL", UPSTREAM)
    monkeypatch.setenv("DEMO_HUB_URL", HUB)


def seed(*args) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


KEY_PATTERN = re.compile(r"ihk_[0-9a-f]+_\S+")


def counts() -> dict:
    return {model._meta.label: model.objects.count() for model in COUNTED}


def demo_integrations() -> dict[str, Integration]:
    return {i.name: i for i in Integration.objects.filter(tenant__slug="demo").live().select_related("provider")}


def test_a_second_run_creates_nothing():
    seed()
    first = counts()
    second_output = seed()

    assert counts() == first
    assert first["connections.Integration"] == 4 and first["webhooks.WebhookEndpoint"] == 1
    assert first["notifications.NotificationEndpoint"] == 1
    assert first["connections.Credential"] == 3
    assert first["catalog.IntegrationProvider"] == len(PROVIDERS) + len(DEMO_SLUGS)
    assert "already exists" in second_output


def test_the_demo_integrations_point_at_the_upstream_with_credentials_it_accepts():
    seed()
    integrations = demo_integrations()

    assert set(integrations) == {DEMO_INTEGRATION, "Demo payments", "Demo shipping", "Demo CRM"}
    assert {i.api_base_url for i in integrations.values()} == {UPSTREAM}
    inventory = integrations[DEMO_INTEGRATION]
    assert (inventory.update_method, inventory.status_endpoint) == ("polling", "/inventory/items")
    assert inventory.status_mapping and inventory.provider.slug == "generic-rest"
    credential = Credential.objects.get(integration=inventory)
    assert credential.type == "api_key" and credential.payload == {"api_key": INVENTORY_API_KEY}
    assert {i.provider.slug: Credential.objects.filter(integration=i).values_list("type", flat=True).first()
            for i in integrations.values()} == {"generic-rest": "api_key", "demo-payments": "bearer",
                                                 "demo-shipping": "basic", "demo-crm": None}
    payments = integrations["Demo payments"]
    endpoint = WebhookEndpoint.objects.get(integration=payments)
    assert payments.update_method == "webhook" and endpoint.active and endpoint.signature_scheme == "standard_webhooks"
    crm = IntegrationProvider.objects.get(slug="demo-crm")
    assert crm.oauth_config["token_url"] == f"{UPSTREAM}/oauth/token" and crm.oauth_config["pkce"] is True
    assert "client_secret" not in crm.oauth_config and crm.oauth_client_secret == CLIENT_SECRET
    assert set(Tenant.objects.get(slug="demo").allowed_return_hosts) == {"127.0.0.1:18000", "localhost:18000"}
    assert not AuditEvent.objects.exclude(actor="system").exists()


def test_the_output_names_the_upstream_the_logins_and_the_oauth_steps():
    output = seed()
    crm = demo_integrations()["Demo CRM"]
    endpoint = WebhookEndpoint.objects.get()

    for expected in (f"Demo upstream: {UPSTREAM}/", "demo-admin", DEFAULT_PASSWORD, "Tenant slug: demo",
                     f"{HUB}/api/v1/integrations/{crm.pk}/connect/oauth", endpoint.url_path):
        assert expected in output
    assert re.search(r"ihk_[0-9a-f]+_\S+", output)


def test_the_demo_tenant_has_a_notification_endpoint_at_the_upstream_for_every_type():
    output = seed()

    endpoint = NotificationEndpoint.objects.get()
    assert (endpoint.tenant.slug, endpoint.url, endpoint.events, endpoint.active) == (
        "demo", f"{UPSTREAM}/notifications", EVENT_TYPES, True)
    # Generated by the service, stored encrypted, never in the audit trail or the output.
    assert endpoint.secret.startswith("whsec_") and endpoint.secret in STORED_SECRETS
    assert endpoint.secret not in raw_value(NotificationEndpoint, "secret", endpoint.pk)
    created = AuditEvent.objects.get(action="notification_endpoint.created")
    assert created.actor == "system" and created.changes["secret"] == "[redacted]"
    assert f"{UPSTREAM}/notifications" in output and endpoint.secret not in output


def test_an_older_demo_inventory_integration_is_pointed_at_the_upstream():
    # What earlier versions seeded: the inventory integration on the api.example.com placeholder.
    seed("--catalog-only")
    tenant = tenant_create(actor=SYSTEM, data={"slug": "demo", "name": "Demo Company", "plan": "pro"})
    old = integration_create(actor=SYSTEM, tenant=tenant, provider=IntegrationProvider.objects.get(slug="generic-rest"),
                             data={"name": DEMO_INTEGRATION, "environment": "sandbox"})
    assert old.api_base_url == "https://api.example.com"

    seed()

    inventory = Integration.objects.get(pk=old.pk)
    assert inventory.api_base_url == UPSTREAM and inventory.test_endpoint == "/inventory/ping"
    assert Credential.objects.get(integration=inventory).type == "api_key"
    updated = AuditEvent.objects.get(action="integration.updated", target_id=str(old.pk))
    assert updated.actor == "system" and updated.changes["api_base_url"]["from"] == "https://api.example.com"
    assert Integration.objects.filter(tenant=tenant, name=DEMO_INTEGRATION).live().count() == 1


def test_a_new_upstream_address_is_followed_once(monkeypatch):
    seed()
    monkeypatch.setenv("DEMO_UPSTREAM_URL", "http://127.0.0.1:19001/")
    seed()
    after = counts()
    seed()

    assert counts() == after
    assert {i.api_base_url for i in demo_integrations().values()} == {"http://127.0.0.1:19001"}
    providers = IntegrationProvider.objects.filter(slug__in=DEMO_SLUGS)
    assert {p.default_api_base_url for p in providers} == {"http://127.0.0.1:19001"}
    assert providers.get(slug="demo-crm").oauth_config["authorize_url"] == "http://127.0.0.1:19001/oauth/authorize"
    assert NotificationEndpoint.objects.get().url == "http://127.0.0.1:19001/notifications"


def test_catalog_only_writes_the_real_world_catalog_alone():
    output = seed("--catalog-only")
    again = seed("--catalog-only")

    assert set(IntegrationProvider.objects.values_list("slug", flat=True)) == {p["slug"] for p in PROVIDERS}
    assert not Tenant.objects.exists() and not get_user_model().objects.exists() and not ApiKey.objects.exists()
    assert "Provider catalog ready" in output and "0 new provider" in again
    assert not DEMO_SLUGS & {p["slug"] for p in PROVIDERS}
    assert {p["slug"] for p in demo_providers(UPSTREAM)} == DEMO_SLUGS


def test_seed_demo_twice_creates_nothing_new_and_prints_logins(monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    first = seed()
    after_first = counts()
    second = seed()

    assert counts() == after_first
    for text in (first, second):
        for expected in ("/admin/", "/api/docs/", "demo-admin", "demo-manager", "demo-member", "admin",
                         "demo-pass-123", "Tenant slug: demo"):
            assert expected in text
    assert KEY_PATTERN.search(first)
    assert not KEY_PATTERN.search(second)
    assert "already exists" in second


def test_seed_demo_builds_the_catalog_tenant_users_and_integration():
    seed()

    slugs = set(IntegrationProvider.objects.values_list("slug", flat=True))
    assert {"stripe", "twilio", "sendgrid", "salesforce", "hubspot", "slack", "github", "generic-rest",
            "snowflake"} <= slugs
    assert len(slugs) >= 8
    generic = IntegrationProvider.objects.get(slug="generic-rest")
    assert generic.auth_type == "none"
    assert set(generic.default_status_mapping) == set(CanonicalStatus.values)
    salesforce = IntegrationProvider.objects.get(slug="salesforce")
    assert salesforce.auth_type == "oauth2" and salesforce.oauth_config["client_id"]
    assert salesforce.oauth_client_secret == ""
    assert IntegrationProvider.objects.get(slug="slack").default_webhook_signature_scheme == "slack"
    assert IntegrationProvider.objects.get(slug="github").default_webhook_signature_scheme == "github"
    snowflake = IntegrationProvider.objects.get(slug="snowflake")
    assert snowflake.is_premium and snowflake.required_plan == "enterprise"
    for provider in IntegrationProvider.objects.all():
        provider.full_clean()

    tenant = Tenant.objects.get(slug="demo")
    assert tenant.plan == "pro"
    roles = dict(Membership.objects.for_tenant(tenant).values_list("user__username", "role"))
    assert roles == {"demo-admin": "tenant_admin", "demo-manager": "integration_manager", "demo-member": "member"}
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    live = Integration.objects.for_tenant(tenant).live()
    assert set(live.values_list("name", flat=True)) == {"Demo inventory API", "Demo payments", "Demo shipping",
                                                        "Demo CRM"}
    integration = live.get(name="Demo inventory API")
    assert integration.provider == generic and integration.status == "pending"
    assert integration.versions.count() == 2  # created, then its credential set
    assert integration.credentials.filter(user__isnull=True, payload__isnull=False).exists()
    assert AuditEvent.objects.filter(action="integration.created", actor="system").count() == 4


def test_seeded_logins_and_printed_api_key_work(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "another-demo-pass-456")
    output = seed()

    assert "another-demo-pass-456" in output
    assert DjangoClient().login(username="admin", password="another-demo-pass-456")
    assert DjangoClient().login(username="demo-member", password="another-demo-pass-456")
    raw = KEY_PATTERN.search(output).group(0)
    key = ApiKey.objects.get(tenant__slug="demo")
    assert key.key_hash == hash_api_key(raw) and key.role == "tenant_admin"
    response = APIClient().get("/api/v1/tenant/", HTTP_X_API_KEY=raw)
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "demo"


def test_seed_demo_creates_a_new_key_when_the_demo_key_was_revoked():
    seed()
    ApiKey.objects.update(revoked_at="2020-01-01T00:00:00Z")

    output = seed()

    assert KEY_PATTERN.search(output)
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1



def test_an_upstream_url_that_is_not_http_is_refused(monkeypatch):
    from django.core.management import CommandError

    monkeypatch.setenv("DEMO_UPSTREAM_URL", "ftp://127.0.0.1:8001")
    with pytest.raises(CommandError, match="DEMO_UPSTREAM_URL"):
        seed()
    assert not Tenant.objects.exists()


# --- against a running upstream ----------------------------------------------------------------------------------


@pytest.fixture
def seeded(upstream, monkeypatch, settings):
    """seed_demo pointed at the test's upstream; the outbound client may reach loopback."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    monkeypatch.setenv("DEMO_UPSTREAM_URL", upstream.base_url)
    seed()
    return demo_integrations()


def test_the_seeded_integrations_connection_tests_succeed(seeded):
    for name in (DEMO_INTEGRATION, "Demo payments", "Demo shipping"):
        check = connection_test_run(integration=seeded[name], actor=SYSTEM)
        assert check.success, (name, check.error_code, check.error_message)
        assert check.status_code == 200 and check.sample["ok"] is True
        integration = Integration.objects.get(pk=seeded[name].pk)
        assert (integration.status, integration.health_state) == ("connected", "healthy")
        assert Credential.objects.get(integration=integration).status == "active"
    unconnected = connection_test_run(integration=seeded["Demo CRM"], actor=SYSTEM)
    assert unconnected.error_code == "NOT_CONFIGURED"


def test_polling_the_inventory_changes_its_statuses(seeded, clock):
    inventory = seeded[DEMO_INTEGRATION]
    first = status_poll(integration=inventory)
    assert first.seen == 6 and first.changed == 0
    unknown = dict(first.unknown)

    for _ in range(6):
        clock.advance(ROTATE_EVERY)
        result = status_poll(integration=inventory)
        assert result.seen == 6 and result.changed >= 1
        for raw, count in result.unknown.items():
            unknown[raw] = unknown.get(raw, 0) + count

    assert set(unknown) == {UNKNOWN_STATUS}
    assert StatusChange.objects.filter(integration=inventory).count() >= 6
    assert ExternalStatus.objects.filter(integration=inventory).count() == 6


def test_the_oauth_demo_connect_flow_completes_over_http(seeded, upstream, settings):
    settings.DEBUG = True  # http return URLs on loopback are for development only
    crm = seeded["Demo CRM"]
    api = APIClient()
    token = api.post("/api/v1/auth/token/", {"username": "demo-admin", "password": DEFAULT_PASSWORD,
                                             "tenant": "demo"}, format="json")
    assert token.status_code == 200, token.content
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['access']}")

    started = api.post(f"/api/v1/integrations/{crm.pk}/connect/oauth", {"return_url": f"{HUB}/"}, format="json")
    assert started.status_code == 200, started.content
    consented = approve(started.json()["authorization_url"])  # the browser, at the upstream
    assert consented.status == 302 and consented.headers["location"].startswith(settings.OAUTH_CALLBACK_URL)
    back = DjangoClient().get("/api/v1/oauth/callback", consented.location_query)  # the browser, back at the hub

    assert back.status_code == 302 and back["Location"] == f"{HUB}/?status=connected"
    connection = api.get(f"/api/v1/integrations/{crm.pk}/connection").json()
    assert connection["status"] == "active" and connection["scopes"] == ["profile", "contacts.read"]
    check = connection_test_run(integration=crm, actor=SYSTEM)
    assert check.success and check.sample["name"] == "Dana Demo"

    access = Credential.objects.get(integration=crm).payload["access_token"]
    disconnected = api.post(f"/api/v1/integrations/{crm.pk}/disconnect")
    assert disconnected.status_code == 200 and disconnected.json()["revoked_at_provider"] is True
    assert call(upstream.url("/crm/me"), headers=bearer(access)).status == 401


def test_the_demo_search_and_widget_data_answer_from_the_upstream(seeded):
    from connections.services import search as search_service
    from connections.services import widgets

    tenant = Tenant.objects.get(slug="demo")
    answer = search_service.search(tenant=tenant, user=None, request=search_service.SearchRequest(query="order"))
    assert answer["errors"] == {}
    names = {item["integration_name"] for item in answer["results"]}
    assert names == {"Demo payments"} and len(answer["results"]) == 4  # the four payments are orders
    assert {item["entity"] for item in answer["results"]} == {"charges"}
    assert all(item["title"].startswith("Order") and item["url"] for item in answer["results"])
    shipped = search_service.search(tenant=tenant, user=None, request=search_service.SearchRequest(query="demo"))
    assert {item["integration_name"] for item in shipped["results"]} == {"Demo shipping"}
    # The CRM is not connected yet: not searched, and named it is NOT_SEARCHABLE.
    named = search_service.search(tenant=tenant, user=None, request=search_service.SearchRequest(query="ada"),
                                  ids=[str(seeded["Demo CRM"].pk)])
    assert named["errors"][str(seeded["Demo CRM"].pk)]["code"] == "NOT_SEARCHABLE"
    charges = widgets.widget_data(seeded["Demo payments"], None, widgets.WidgetQuery(
        entity="charges", fields=["id", "status"], filters={}, limit=2))
    assert len(charges["data"]) == 2 and set(charges["data"][0]) == {"id", "status"} and charges["total"] == 4
