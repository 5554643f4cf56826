"""How each credential type is shaped: which fields it takes and which are secret.

Providers are rows that staff edit; the shape of a kind of credential is code.
``custom`` credentials take their fields from the provider's ``credential_fields``.
"""
import base64
import re
from dataclasses import dataclass
from datetime import datetime

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError

from .choices import CredentialType

HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]{0,63}$")
FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "cookie"}
MAX_SECRET_LENGTH = 8192


@dataclass(frozen=True)
class FieldSpec:
    name: str
    secret: bool
    required: bool
    kind: str = "string"  # string | datetime | string_list | header


CREDENTIAL_SPECS: dict[str, tuple[FieldSpec, ...]] = {
    CredentialType.API_KEY: (FieldSpec("api_key", True, True), FieldSpec("header_name", False, False, "header")),
    CredentialType.BEARER: (FieldSpec("token", True, True),),
    CredentialType.BASIC: (FieldSpec("username", False, True), FieldSpec("password", True, True)),
    CredentialType.OAUTH2: (
        FieldSpec("access_token", True, True),
        FieldSpec("refresh_token", True, False),
        FieldSpec("expires_at", False, False, "datetime"),
        FieldSpec("scopes", False, False, "string_list"),
        FieldSpec("token_type", False, False),
    ),
}
# The secret whose last characters make the hint.
HINT_FIELD = {
    CredentialType.API_KEY: "api_key",
    CredentialType.BEARER: "token",
    CredentialType.BASIC: "password",
    CredentialType.OAUTH2: "access_token",
}
DEFAULTS = {CredentialType.API_KEY: {"header_name": "X-API-Key"}}


def field_specs(credential_type: str, provider) -> tuple[FieldSpec, ...]:
    if credential_type == CredentialType.CUSTOM:
        return tuple(
            FieldSpec(f["name"], bool(f.get("secret", True)), bool(f.get("required", True)))
            for f in provider.credential_fields
        )
    return CREDENTIAL_SPECS[credential_type]


def secret_field_names(credential_type: str, provider) -> frozenset[str]:
    return frozenset(f.name for f in field_specs(credential_type, provider) if f.secret)


def allowed_types(provider) -> list[str]:
    """Credential types a provider accepts: its own auth type, or any for 'none'."""
    if provider.auth_type == "none":
        return list(CredentialType.values)
    return [provider.auth_type]


def make_hint(secret: str) -> str:
    # Short secrets get no hint: four characters of a ten-character secret say too much.
    return secret[-4:] if len(secret) >= 12 else ""


def _clean_value(spec: FieldSpec, value):
    if spec.kind == "datetime":
        parsed = value if isinstance(value, datetime) else parse_datetime(str(value)) if value else None
        if value and parsed is None:
            raise ValidationError({spec.name: ["Must be an ISO 8601 date-time."]})
        return parsed.isoformat() if parsed else None
    if spec.kind == "string_list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError({spec.name: ["Must be a list of strings."]})
        return value
    if not isinstance(value, str):
        raise ValidationError({spec.name: ["Must be a string."]})
    if spec.kind == "header" and (not HEADER_NAME.match(value) or value.lower() in FORBIDDEN_HEADERS):
        raise ValidationError({spec.name: ["Must be a valid HTTP header name (letters, digits, '-')."]})
    if spec.secret and len(value) > MAX_SECRET_LENGTH:
        raise ValidationError({spec.name: [f"Must be at most {MAX_SECRET_LENGTH} characters."]})
    return value


def split_credential(credential_type: str, provider, data: dict) -> tuple[dict, dict, str]:
    """Validate ``data`` for the type; return (secret payload, public fields, hint).

    Raises a DRF ValidationError naming each missing or unknown field.
    """
    specs = field_specs(credential_type, provider)
    if credential_type == CredentialType.CUSTOM and not specs:
        specs = tuple(FieldSpec(name, True, False) for name in data)
    known = {s.name for s in specs}
    errors = {name: ["Unknown field for this credential type."] for name in data if name not in known}
    for spec in specs:
        value = data.get(spec.name)
        if spec.required and (value is None or value == ""):
            errors[spec.name] = ["This field is required."]
    if errors:
        raise ValidationError(errors)
    values = {**DEFAULTS.get(credential_type, {}), **{k: v for k, v in data.items() if v is not None}}
    secret, public = {}, {}
    for spec in specs:
        if spec.name not in values:
            continue
        cleaned = _clean_value(spec, values[spec.name])
        (secret if spec.secret else public)[spec.name] = cleaned
    hint_source = secret.get(HINT_FIELD.get(credential_type, ""), "") or next(iter(secret.values()), "")
    return secret, public, make_hint(str(hint_source))


def auth_headers(credential, provider) -> dict[str, str]:
    """Request headers that authenticate with ``credential`` (generic REST adapter).

    The values are secrets: callers pass them to the outbound client only and
    never log or store them.
    """
    if credential is None or not credential.is_set:
        return {}
    secret, public = credential.payload or {}, credential.public_fields or {}
    kind = credential.type
    if kind == CredentialType.API_KEY:
        return {public.get("header_name") or "X-API-Key": secret["api_key"]}
    if kind == CredentialType.BEARER:
        return {"Authorization": f"Bearer {secret['token']}"}
    if kind == CredentialType.OAUTH2:
        return {"Authorization": f"{public.get('token_type') or 'Bearer'} {secret['access_token']}"}
    if kind == CredentialType.BASIC:
        raw = f"{public.get('username', '')}:{secret.get('password', '')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    if kind == CredentialType.CUSTOM:
        headers = {}
        for spec in provider.credential_fields:
            header = spec.get("header")
            value = secret.get(spec["name"], public.get(spec["name"]))
            if header and value:
                headers[header] = str(value)
        return headers
    return {}
