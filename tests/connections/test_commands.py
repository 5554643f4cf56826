"""Management commands: rotate_encryption_keys and seed_demo."""
import io
import re

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.services import SYSTEM
from catalog.choices import CanonicalStatus
from catalog.models import IntegrationProvider
from connections.models import Credential, Integration
from connections.services import credential_set
from tenants.authentication import hash_api_key
from tenants.models import ApiKey, Membership, Tenant
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.helpers import raw_value, write_raw

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
STRANGER_KEY = Fernet.generate_key().decode()

CLIENT_SECRET = "provider-client-secret-0001"
API_SECRET = "sk_live_rotation_test_abcdef"
OTHER_SECRET = "sk_live_second_credential_9999"


def run_rotate(*args) -> str:
    out = io.StringIO()
    call_command("rotate_encryption_keys", "--no-progress", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def encrypted_rows(settings, tenant):
    """A provider client secret and two credentials, all written under OLD_KEY only."""
    settings.FERNET_KEYS = [OLD_KEY]
    provider = ProviderFactory(slug="rot-provider", auth_type="api_key", oauth_client_secret=CLIENT_SECRET)
    first = IntegrationFactory(tenant=tenant, provider=provider, name="First")
    second = IntegrationFactory(tenant=tenant, provider=provider, name="Second")
    cred1 = credential_set(actor=SYSTEM, integration=first, credential_type="api_key", data={"api_key": API_SECRET})
    cred2 = credential_set(actor=SYSTEM, integration=second, credential_type="api_key", data={"api_key": OTHER_SECRET})
    return provider, cred1, cred2


def test_rotation_with_new_key_first_then_old_key_removed_keeps_every_secret_readable(settings, encrypted_rows):
    provider, cred1, cred2 = encrypted_rows
    before = {
        "provider": raw_value(IntegrationProvider, "oauth_client_secret", provider.pk),
        "cred1": raw_value(Credential, "payload", cred1.pk),
        "cred2": raw_value(Credential, "payload", cred2.pk),
    }
    assert CLIENT_SECRET not in before["provider"] and API_SECRET not in before["cred1"]

    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    output = run_rotate("--batch-size", "1")  # one row per batch exercises the keyset paging

    assert "catalog.IntegrationProvider.oauth_client_secret: rotated 1 of 1" in output
    assert "connections.Credential.payload: rotated 2 of 2" in output
    for secret in (CLIENT_SECRET, API_SECRET, OTHER_SECRET):
        assert secret not in output

    settings.FERNET_KEYS = [NEW_KEY]
    after = {
        "provider": raw_value(IntegrationProvider, "oauth_client_secret", provider.pk),
        "cred1": raw_value(Credential, "payload", cred1.pk),
        "cred2": raw_value(Credential, "payload", cred2.pk),
    }
    for name, token in after.items():
        assert token != before[name]
        with pytest.raises(InvalidToken):
            Fernet(OLD_KEY.encode()).decrypt(token.encode())
    assert IntegrationProvider.objects.get(pk=provider.pk).oauth_client_secret == CLIENT_SECRET
    assert Credential.objects.get(pk=cred1.pk).payload == {"api_key": API_SECRET}
    assert Credential.objects.get(pk=cred2.pk).payload == {"api_key": OTHER_SECRET}


def test_dry_run_reports_counts_and_writes_nothing(settings, encrypted_rows):
    provider, cred1, _ = encrypted_rows
    before = raw_value(Credential, "payload", cred1.pk)
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]

    output = run_rotate("--dry-run")

    assert "connections.Credential.payload: would rotate 2 of 2" in output
    assert raw_value(Credential, "payload", cred1.pk) == before
    settings.FERNET_KEYS = [OLD_KEY]
    assert Credential.objects.get(pk=cred1.pk).payload == {"api_key": API_SECRET}


def test_value_under_an_unknown_key_is_counted_reported_and_left_unchanged(settings, encrypted_rows):
    _, cred1, cred2 = encrypted_rows
    foreign_plaintext = '{"api_key":"sk_live_foreign_value_0000"}'
    foreign = Fernet(STRANGER_KEY.encode()).encrypt(foreign_plaintext.encode()).decode()
    write_raw(Credential, "payload", cred2.pk, foreign)
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    out = io.StringIO()

    with pytest.raises(CommandError) as excinfo:
        call_command("rotate_encryption_keys", "--no-progress", stdout=out, stderr=io.StringIO())

    assert "1 value(s) could not be decrypted" in str(excinfo.value)
    assert "connections.Credential.payload: rotated 1 of 2; 1 could not be decrypted" in out.getvalue()
    assert "sk_live_foreign_value_0000" not in out.getvalue() + str(excinfo.value)
    assert foreign not in out.getvalue() + str(excinfo.value)
    assert raw_value(Credential, "payload", cred2.pk) == foreign
    settings.FERNET_KEYS = [NEW_KEY]
    assert Credential.objects.get(pk=cred1.pk).payload == {"api_key": API_SECRET}


def test_rotation_covers_empty_tables_and_null_columns(settings, tenant, provider):
    settings.FERNET_KEYS = [OLD_KEY]
    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Null payload")
    Credential.objects.create(tenant=tenant, integration=integration, type="bearer", payload=None)

    output = run_rotate()

    assert "connections.Credential.payload: rotated 0 of 0" in output
    assert "catalog.IntegrationProvider.oauth_client_secret: rotated 0 of 0" in output


# --- seed_demo -----------------------------------------------------------------

SEEDED_MODELS = (IntegrationProvider, Tenant, get_user_model(), Membership, Integration, ApiKey, AuditEvent)
KEY_PATTERN = re.compile(r"ihk_[0-9a-f]+_\S+")


def run_seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict:
    return {model._meta.label: model.objects.count() for model in SEEDED_MODELS}


@pytest.mark.django_db
def test_seed_demo_twice_creates_nothing_new_and_prints_logins(monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    first = run_seed()
    after_first = counts()
    second = run_seed()

    assert counts() == after_first
    for text in (first, second):
        for expected in ("/admin/", "/api/docs/", "demo-admin", "demo-manager", "demo-member", "admin",
                         "demo-pass-123", "Tenant slug: demo"):
            assert expected in text
    assert KEY_PATTERN.search(first)
    assert not KEY_PATTERN.search(second)
    assert "already exists" in second


@pytest.mark.django_db
def test_seed_demo_builds_the_catalog_tenant_users_and_integration():
    run_seed()

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


@pytest.mark.django_db
def test_seeded_logins_and_printed_api_key_work(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "another-demo-pass-456")
    output = run_seed()

    assert "another-demo-pass-456" in output
    assert Client().login(username="admin", password="another-demo-pass-456")
    assert Client().login(username="demo-member", password="another-demo-pass-456")
    raw = KEY_PATTERN.search(output).group(0)
    key = ApiKey.objects.get(tenant__slug="demo")
    assert key.key_hash == hash_api_key(raw) and key.role == "tenant_admin"
    response = APIClient().get("/api/v1/tenant/", HTTP_X_API_KEY=raw)
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "demo"


@pytest.mark.django_db
def test_seed_demo_creates_a_new_key_when_the_demo_key_was_revoked():
    run_seed()
    ApiKey.objects.update(revoked_at="2020-01-01T00:00:00Z")

    output = run_seed()

    assert KEY_PATTERN.search(output)
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1
