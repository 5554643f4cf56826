"""Credentials at rest: Fernet tokens in the column, key rotation, wrong keys."""
import pytest
from cryptography.fernet import Fernet

from audit.services import Actor
from connections import services
from connections.models import Credential
from integrations_site import crypto
from integrations_site.crypto import DecryptionError
from tests.conftest import make_user
from tests.helpers import raw_value, write_raw

PLAINTEXT = "sk_live_crypto_plaintext_0123456789"


def raw_payload(credential_id) -> str | None:
    return raw_value(Credential, "payload", credential_id)


@pytest.fixture
def stored(integration, tenant):
    actor = Actor(user=make_user("tenant_admin", tenant, "crypto-admin"))
    return services.credential_set(
        actor=actor, integration=integration, credential_type="api_key", data={"api_key": PLAINTEXT}
    )


def test_raw_column_holds_a_fernet_token_not_the_plaintext(stored):
    raw = raw_payload(stored.pk)
    assert raw.startswith("gAAAAA")
    assert PLAINTEXT not in raw
    assert "api_key" not in raw


def test_only_secret_fields_go_into_the_encrypted_payload(stored):
    credential = Credential.objects.get(pk=stored.pk)
    assert credential.payload == {"api_key": PLAINTEXT}
    assert credential.public_fields == {"header_name": "X-API-Key"}


def test_the_same_plaintext_encrypts_differently_each_time(stored, integration):
    first = raw_payload(stored.pk)
    Credential.objects.filter(pk=stored.pk).update(payload={"api_key": PLAINTEXT})
    assert raw_payload(stored.pk) != first
    assert Credential.objects.get(pk=stored.pk).payload == {"api_key": PLAINTEXT}


def test_rows_written_under_the_old_key_still_decrypt_after_a_new_key_is_added(stored, settings):
    old_key = settings.FERNET_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, old_key]
    assert Credential.objects.get(pk=stored.pk).payload == {"api_key": PLAINTEXT}

    # New writes use the first key only.
    Credential.objects.filter(pk=stored.pk).update(payload={"api_key": PLAINTEXT})
    token = raw_payload(stored.pk)
    assert PLAINTEXT in Fernet(new_key.encode()).decrypt(token.encode()).decode()


def test_rotated_rows_decrypt_once_the_old_key_is_removed(stored, settings):
    old_key = settings.FERNET_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, old_key]
    rotated = crypto.rotate_token(raw_payload(stored.pk))
    write_raw(Credential, "payload", stored.pk, rotated)
    settings.FERNET_KEYS = [new_key]
    assert Credential.objects.get(pk=stored.pk).payload == {"api_key": PLAINTEXT}


def test_a_wrong_key_raises_decryption_error_without_the_secret(stored, settings):
    token = raw_payload(stored.pk)
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionError) as raised:
        Credential.objects.get(pk=stored.pk)
    message = str(raised.value)
    assert PLAINTEXT not in message
    assert token not in message
    assert "FERNET_KEYS" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_rotate_with_a_wrong_key_raises_decryption_error(stored, settings):
    token = raw_payload(stored.pk)
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionError) as raised:
        crypto.rotate_token(token)
    assert token not in str(raised.value)


def test_erased_payload_is_stored_as_null(stored):
    Credential.objects.filter(pk=stored.pk).update(payload=None)
    assert raw_payload(stored.pk) is None
    assert Credential.objects.get(pk=stored.pk).payload is None
