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

from integrations_site import outbound

from ..choices import CredentialType

HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]{0,63}$")
FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "cookie"}
MAX_SECRET_LENGTH = 8192
MAX_PEM_LENGTH = 65536


@dataclass(frozen=True)
class FieldSpec:
    name: str
    secret: bool
    required: bool
    kind: str = "string"  # string | datetime | string_list | header | pem


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
# Any type may carry a client certificate for mutual TLS; the key is a secret like the others.
TLS_SPECS = (FieldSpec("client_certificate", False, False, "pem"), FieldSpec("client_key", True, False, "pem"))
TLS_FIELDS = frozenset(spec.name for spec in TLS_SPECS)


def field_specs(credential_type: str, provider) -> tuple[FieldSpec, ...]:
    if credential_type == CredentialType.CUSTOM:
        own = tuple(
            FieldSpec(f["name"], bool(f.get("secret", True)), bool(f.get("required", True)))
            for f in provider.credential_fields
        )
        return own + tuple(spec for spec in TLS_SPECS if spec.name not in {s.name for s in own})
    return CREDENTIAL_SPECS[credential_type] + TLS_SPECS


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
    if spec.kind == "pem":
        if len(value) > MAX_PEM_LENGTH:
            raise ValidationError({spec.name: [f"Must be at most {MAX_PEM_LENGTH} characters."]})
        return value
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
    if credential_type == CredentialType.CUSTOM and not provider.credential_fields:
        specs = tuple(FieldSpec(name, True, False) for name in data if name not in TLS_FIELDS) + TLS_SPECS
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
    problems = outbound.tls_problems(None, public.get("client_certificate"), secret.get("client_key"))
    if problems:
        raise ValidationError({name: [message] for name, message in problems.items()})
    hint_source = secret.get(HINT_FIELD.get(credential_type, "")) or next(
        (value for name, value in secret.items() if name not in TLS_FIELDS), ""
    )
    return secret, public, make_hint(str(hint_source))


def public_for_audit(public: dict) -> dict:
    """The public fields as an audit event shows them: a certificate is named, not copied."""
    return {name: ("set" if name in TLS_FIELDS and value else value) for name, value in public.items()}


def settings_problems(settings: dict) -> dict:
    """What is wrong with an integration's ``settings`` that the hub reads: ``settings.tls`` is
    ``{"ca_bundle": "<PEM>"}`` (public; only those CAs are trusted), ``settings.search`` overrides keys of
    the provider's ``search_config`` (the same keys and rules)."""
    problems = _tls_problems(settings)
    if settings.get("search") not in (None, {}):
        from django.core.exceptions import ValidationError as DjangoValidationError

        from catalog.validators import validate_search_config

        try:
            validate_search_config(settings["search"])
        except DjangoValidationError as exc:
            problems["search"] = exc.messages
    return problems


def _tls_problems(settings: dict) -> dict:
    if "tls" not in settings or settings["tls"] is None:
        return {}
    tls = settings["tls"]
    if not isinstance(tls, dict) or set(tls) - {"ca_bundle"}:
        return {"tls": ["Must be an object with the key 'ca_bundle' (PEM certificates)."]}
    bundle = tls.get("ca_bundle")
    if bundle in (None, ""):
        return {}
    if not isinstance(bundle, str) or len(bundle) > MAX_PEM_LENGTH:
        return {"tls": {"ca_bundle": [f"Must be a string of at most {MAX_PEM_LENGTH} characters."]}}
    problems = outbound.tls_problems(ca_bundle_pem=bundle)
    return {"tls": {"ca_bundle": [problems["ca_bundle"]]}} if problems else {}


def request_options(integration, credential) -> dict:
    """Keyword arguments of ``outbound.request`` that speak to the integration's API as ``credential``:
    its auth headers, the integration's CA bundle and the credential's client certificate."""
    options = {"headers": auth_headers(credential, integration.provider)}
    tls = (integration.settings or {}).get("tls") if isinstance(integration.settings, dict) else None
    if isinstance(tls, dict) and isinstance(tls.get("ca_bundle"), str) and tls["ca_bundle"]:
        options["ca_bundle_pem"] = tls["ca_bundle"]
    if credential is not None and credential.is_set:
        certificate = (credential.public_fields or {}).get("client_certificate")
        key = (credential.payload or {}).get("client_key")
        if certificate and key:
            options["client_cert_pem"], options["client_key_pem"] = certificate, key
    return options


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
