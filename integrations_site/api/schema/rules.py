"""What the validators check, stated in the document: field patterns, shapes and the error statuses."""
import copy

from django.core.exceptions import FieldDoesNotExist
from rest_framework import serializers

from catalog import validators as catalog_validators
from catalog.choices import CanonicalStatus
from webhooks.signatures import MIN_SECRET_LENGTH

ERROR_STATUSES = {
    "400": "Validation error (VALIDATION_ERROR, URL_NOT_ALLOWED, …)",
    "401": "Not authenticated (NOT_AUTHENTICATED)",
    "403": "Permission denied (PERMISSION_DENIED)",
    "404": "Not found (NOT_FOUND, INTEGRATION_NOT_FOUND, PROVIDER_NOT_FOUND)",
    "409": "Conflict (CONFLICT)",
    "429": "Rate limited (RATE_LIMIT_EXCEEDED, LIMIT_EXCEEDED)",
}


# --- What the shared model validators accept, as JSON Schema --------------------------------------
# drf-spectacular documents a JSONField as "any value" and a validated CharField as any string; these
# validators (catalog/validators.py) accept much less, and the request schemas say so.

# An absolute URL as Django's URLValidator takes it (http, https, ftp, ftps: any case), narrowed to the common
# form: a host with a top-level domain, an optional port, no credentials, no whitespace. ``format: uri``
# alone admits much that the validator refuses ("sha256:", "a:b").
URL_HOST_PART = (
    r"://(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?::[0-9]{1,5})?(?:[/?#]\S*)?"
)
ANY_URL_PATTERN = r"(?:[Hh][Tt][Tt][Pp][Ss]?|[Ff][Tt][Pp][Ss]?)" + URL_HOST_PART
# validate_http_url: http(s) only.
HTTP_URL_PATTERN = r"[Hh][Tt][Tt][Pp][Ss]?" + URL_HOST_PART
STRING_LIST = {"type": "array", "items": {"type": "string"}}
VALIDATOR_SCHEMAS = {
    catalog_validators.validate_string_list: STRING_LIST,
    catalog_validators.validate_status_mapping: {
        "type": "object",
        "description": "Canonical status → the raw values that mean it; a raw value under one status only.",
        "properties": {
            status: {"type": "array", "items": {"type": "string", "minLength": 1}}
            for status in CanonicalStatus.values
        },
        "additionalProperties": False,
    },
    catalog_validators.validate_credential_fields: {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "description": "Unique among the fields."},
                "label": {}, "secret": {}, "required": {}, "help_text": {},
                "header": {
                    "type": "string", "nullable": True, "pattern": "^[A-Za-z0-9][A-Za-z0-9-]{0,63}$",
                    "description": "The HTTP header the value is sent in (not Host, Content-Length, "
                                   "Transfer-Encoding or Cookie).",
                },
            },
            "required": ["name"],
            "additionalProperties": False,
        },
    },
}
OAUTH_CONFIG = {
    "type": "object",
    "properties": {
        **{key: {"type": "string", "pattern": f"^(?:{HTTP_URL_PATTERN})?$"}
           for key in ("authorize_url", "token_url", "revoke_url")},
        "client_id": {},
        "client_secret": {"type": "string", "writeOnly": True, "description": "Stored encrypted, never read back."},
        "scopes": STRING_LIST,
        "pkce": {"description": "Use PKCE (S256); true unless false."},
        "issuer": {"description": "The expected `iss` of the callback (RFC 9207), when the provider sends one."},
        "token_auth_method": {"type": "string", "enum": ["client_secret_basic", "client_secret_post"]},
        "extra_authorize_params": {"type": "object"},
    },
    "additionalProperties": False,
}
# Patterns merged into a string field's schema (into its non-blank branch when blank is allowed too).
# DRF strips surrounding whitespace from a CharField before its validators run.
STRING_PATTERNS = {
    catalog_validators.validate_endpoint: (
        rf"^\s*(?:/(?![/\s])[^\\\s]*|{HTTP_URL_PATTERN})\s*$",
        "A path under the base URL ('/status'), or an absolute http(s) URL.",
    ),
}
# Rules a serializer checks in its own code, which drf-spectacular cannot see: (serializer, field) → schema.
HOST_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
FIELD_RULES = {
    ("tenants.api.serializers.TenantSerializer", "allowed_return_hosts"): {
        "type": "array",
        "items": {
            "type": "string", "maxLength": 260,
            "pattern": rf"^\s*{HOST_LABEL}(?:\.{HOST_LABEL})*(?::[0-9]{{1,5}})?\s*$",
        },
        "description": "Bare host names (app.example.com, optionally :port) that OAuth return URLs may point at.",
    },
    ("webhooks.api.serializers.WebhookEndpointSerializer", "path"): {"pattern": r"^\s*[A-Za-z0-9_-]{8,100}\s*$"},
    ("webhooks.api.serializers.WebhookEndpointSerializer", "signature_header"): {
        "pattern": r"^\s*[A-Za-z0-9][A-Za-z0-9-]{0,99}\s*$",
    },
    ("connections.api.serializers.credentials.CustomCredentialSerializer", "fields"): {
        "type": "object", "additionalProperties": {"type": "string"},
    },
    ("catalog.api.serializers.ProviderAdminSerializer", "oauth_config"): OAUTH_CONFIG,
    ("webhooks.api.serializers.WebhookEndpointSerializer", "secret"): {"minLength": MIN_SECRET_LENGTH},
    ("webhooks.api.serializers.RotateSecretSerializer", "secret"): {"minLength": MIN_SECRET_LENGTH},
}


def _merge_string_rule(schema: dict, rule: dict) -> dict:
    """Put ``rule`` into the string branch of ``schema`` (not the ``maxLength: 0`` blank branch)."""
    branches = [b for b in schema.get("oneOf", [schema]) if b.get("maxLength") != 0]
    for branch in branches:
        branch.update(rule)
    return schema


def _field_rule(field) -> dict | None:
    parent = getattr(field, "parent", None)
    if parent is None:
        return None
    for klass in type(parent).__mro__:
        rule = FIELD_RULES.get((f"{klass.__module__}.{klass.__qualname__}", field.field_name))
        if rule is not None:
            return copy.deepcopy(rule)
    return None


# An http(s) URL field (URLField with validate_http_url): the same URL, or blank where the field allows it.
URL_FIELD_PATTERN = f"^{HTTP_URL_PATTERN}$"
# A decimal sent as a string holds at least one digit ("", "-" and "." are not numbers).
DECIMAL_PATTERN = r"^-?(?:\d{{1,{whole}}}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}})$"


def _validated_shape(field, schema: dict) -> dict:
    """``schema`` narrowed to what the field's validators accept (request bodies only)."""
    if isinstance(field, serializers.URLField):
        for branch in schema.get("oneOf", [schema]):
            if branch.get("format") == "uri":
                branch["pattern"] = f"^{ANY_URL_PATTERN}$"
    for validator in getattr(field, "validators", ()):
        shape = next((copy.deepcopy(shape) for known, shape in VALIDATOR_SCHEMAS.items() if validator is known), None)
        if shape is not None:
            kept = {k: v for k, v in schema.items() if k in ("description", "nullable", "maxLength", "writeOnly")}
            if "description" in kept and "description" in shape:
                kept["description"] = f"{kept['description']} {shape['description']}"
            schema = {**shape, **kept}
        elif validator is catalog_validators.validate_http_url:
            for branch in schema.get("oneOf", [schema]):
                if branch.get("format") == "uri":
                    branch["pattern"] = URL_FIELD_PATTERN
        elif any(validator is known for known in STRING_PATTERNS):
            pattern, description = next(v for k, v in STRING_PATTERNS.items() if k is validator)
            schema = _merge_string_rule(schema, {"pattern": pattern})
            schema.setdefault("description", description)
    rule = _field_rule(field)
    if rule is not None:
        if "type" not in rule:
            schema = _merge_string_rule(schema, rule)
        else:
            kept = {k: v for k, v in schema.items() if k in ("description", "nullable", "writeOnly")}
            schema = {**rule, **kept}
    if isinstance(field, serializers.DecimalField) and schema.get("type") == "string" and field.max_digits:
        places = field.decimal_places or 0
        schema["pattern"] = DECIMAL_PATTERN.format(whole=field.max_digits - places, places=max(places, 1))
    return schema


def _model_field_allows_blank(field) -> bool:
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    if model is None or not field.source or "." in field.source:
        return False
    try:
        return bool(model._meta.get_field(field.source).blank)
    except FieldDoesNotExist:
        return False
