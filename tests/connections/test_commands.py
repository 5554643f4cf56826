"""Management commands of connections: rotate_encryption_keys."""
import io

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command

from audit.services import SYSTEM
from catalog.models import IntegrationProvider
from connections.models import Credential
from connections.services import credential_set
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
