"""Fernet encryption of secrets at rest.

A small field of our own over ``cryptography.fernet.MultiFernet`` rather than
django-fernet-fields-v2: that fork derives keys through HKDF from its own
setting name and caches them at import, while we need plain Fernet keys from
``FERNET_KEYS`` (first encrypts, all decrypt), a JSON variant for credential
payloads, and a ``rotate`` used by ``manage.py rotate_encryption_keys``.
"""
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

# How long a rotated signing secret (inbound webhook endpoints, notification endpoints) still verifies or
# is still signed with, by default and at most: one rule for every secret the hub rotates.
DEFAULT_GRACE_SECONDS = 24 * 3600
MAX_GRACE_SECONDS = 7 * 24 * 3600


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key."""


@lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FERNET_KEYS is empty: set at least one Fernet key.")
    try:
        return MultiFernet([Fernet(k.strip().encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("FERNET_KEYS holds a value that is not a valid Fernet key.") from exc


def fernet() -> MultiFernet:
    return _multifernet(tuple(k for k in settings.FERNET_KEYS if k.strip()))


def encrypt_str(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt_str(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        # Never include the token or any key in the message.
        raise DecryptionError("A stored secret could not be decrypted with the configured FERNET_KEYS.") from None


def rotate_token(token: str) -> str:
    """Re-encrypt ``token`` under the first key (decrypting with any key)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("A stored secret could not be decrypted with the configured FERNET_KEYS.") from None


class EncryptedTextField(models.TextField):
    """A text value stored as a Fernet token; reads give the plaintext back."""

    def get_prep_value(self, value):
        value = models.Field.get_prep_value(self, value)
        if value is None or value == "":
            return value
        return encrypt_str(self.to_plain_text(value))

    def to_plain_text(self, value) -> str:
        return str(value)

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return self.from_plain_text(decrypt_str(value))

    def from_plain_text(self, text: str):
        return text


class EncryptedJSONField(EncryptedTextField):
    """A JSON object stored encrypted as one Fernet token."""

    def to_plain_text(self, value) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def from_plain_text(self, text: str):
        return json.loads(text)

    def to_python(self, value):
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value
