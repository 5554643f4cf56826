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
from catalog.models import IntegrationProvider
from connections.management.commands.seed_demo import (
    DEFAULT_PASSWORD,
    DEMO_INTEGRATION,
    PROVIDERS,
    demo_providers,
)
from connections.models import ConfigVersion, ConnectionCheck, Credential, ExternalStatus, Integration, StatusChange
from connections.services import connection_test_run, integration_create, status_poll
from demo.upstream import CLIENT_SECRET, INVENTORY_API_KEY, UNKNOWN_STATUS
from tenants.models import ApiKey, Membership, Tenant
from tenants.services import tenant_create
from webhooks.models import WebhookEndpoint

from .conftest import ROTATE_EVERY, approve, bearer, call

pytestmark = pytest.mark.django_db

UPSTREAM = "http://127.0.0.1:18001"
HUB = "http://127.0.0.1:18000"
DEMO_SLUGS = {"demo-payments", "demo-shipping", "demo-crm"}
COUNTED = (IntegrationProvider, Tenant, get_user_model(), Membership, Integration, Credential, ConfigVersion,
           WebhookEndpoint, ApiKey, AuditEvent, ConnectionCheck)


@pytest.fixture(autouse=True)
def demo_env(monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    monkeypatch.setenv("DEMO_UPSTREAM_URL", UPSTREAM)
    monkeypatch.setenv("DEMO_HUB_URL", HUB)


def seed(*args) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


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


def test_catalog_only_writes_the_real_world_catalog_alone():
    output = seed("--catalog-only")
    again = seed("--catalog-only")

    assert set(IntegrationProvider.objects.values_list("slug", flat=True)) == {p["slug"] for p in PROVIDERS}
    assert not Tenant.objects.exists() and not get_user_model().objects.exists() and not ApiKey.objects.exists()
    assert "Provider catalog ready" in output and "0 new provider" in again
    assert not DEMO_SLUGS & {p["slug"] for p in PROVIDERS}
    assert {p["slug"] for p in demo_providers(UPSTREAM)} == DEMO_SLUGS


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
