"""drf-spectacular: the error envelope on every operation, our auth schemes, and what validators check."""
import copy

from django.core.exceptions import FieldDoesNotExist
from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as BaseAutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from catalog import validators as catalog_validators
from catalog.choices import CanonicalStatus
from webhooks.signatures import MIN_SECRET_LENGTH

from .serializers import ErrorEnvelopeSerializer, StrictFieldsMixin

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


class AutoSchema(BaseAutoSchema):
    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        # DRF drops ``allow_blank`` from read-only model fields, so a blank
        # value ("" for an unset URL or choice) would be documented as invalid.
        # A read-only field never validates input: restoring the flag on this
        # schema-only instance changes nothing at run time.
        if field.read_only and getattr(field, "allow_blank", True) is False and _model_field_allows_blank(field):
            field.allow_blank = True
        schema = super()._map_serializer_field(field, direction, bypass_extensions=bypass_extensions)
        if direction == "request" and isinstance(schema, dict):
            schema = _validated_shape(field, schema)
        return schema

    def _process_override_parameters(self, direction="request"):
        # Query parameters read by a serializer (``parameters=[SomeQuerySerializer]``): DRF reads a query
        # string as form input, where an empty optional value counts as not given (``?time_range=`` is the
        # default range). The document says so instead of calling the empty value invalid.
        result = super()._process_override_parameters(direction)
        for parameter in self.get_override_parameters():
            if not isinstance(parameter, (serializers.Serializer, type)) or isinstance(parameter, OpenApiParameter):
                continue
            fields = getattr(parameter() if isinstance(parameter, type) else parameter, "fields", {})
            for name in fields:
                documented = result.get((name, OpenApiParameter.QUERY))
                if documented and not documented.get("required"):
                    documented["allowEmptyValue"] = True
                    documented["description"] = " ".join(
                        filter(None, [documented.get("description"), "Empty is the same as leaving it out."])
                    )
        return result

    def _get_request_for_media_type(self, serializer, direction="request"):
        # drf-spectacular documents every PATCH body as partial, as DRF's partial_update makes it. A custom
        # PATCH action (…/status, …/audience) validates its own serializer in full: its required fields are
        # required.
        if self.method == "PATCH" and getattr(self.view, "action", "partial_update") not in (None, "partial_update"):
            self.method = "PATCH (full)"
            try:
                return super()._get_request_for_media_type(serializer, direction)
            finally:
                self.method = "PATCH"
        return super()._get_request_for_media_type(serializer, direction)

    def _map_basic_serializer(self, serializer, direction):
        # A strict serializer answers an unknown or read-only field with 400 VALIDATION_ERROR (README:
        # "Unknown fields are rejected"), so its request schema admits no other property.
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictFieldsMixin):
            schema["additionalProperties"] = False
        return schema

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction=direction)
        if direction != "response":
            return responses
        for code, description in ERROR_STATUSES.items():
            if code not in responses:
                response = self._get_response_for_code(ErrorEnvelopeSerializer, code, direction=direction)
                response["description"] = description
                responses[code] = response
        return responses


class StrictFilterParameters(DjangoFilterExtension):
    """django-filter's parameters, as drf-spectacular documents them, for our StrictFilterBackend.

    An empty value (``?status=``) is not a filter, as in a submitted form: the document allows it.
    """

    target_class = "integrations_site.api.filters.StrictFilterBackend"
    priority = 1

    def get_schema_operation_parameters(self, auto_schema, *args, **kwargs):
        parameters = super().get_schema_operation_parameters(auto_schema, *args, **kwargs)
        for parameter in parameters:
            if parameter.get("in") == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        return parameters


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "Tenant API key; `Authorization: Api-Key <key>` is accepted too.",
        }


class TenantJWTScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.TenantJWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "From POST /api/v1/auth/token/; the token carries the tenant.",
        }


class TenantSessionScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.TenantSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


def contract_paths_hook(endpoints):
    """Show optional-slash routes (``…/enable/?``) in the contract's form, without the slash."""
    result = []
    for path, path_regex, method, callback in endpoints:
        if path_regex.endswith("/?$") and path.endswith("/"):
            path = path[:-1]
        result.append((path, path_regex, method, callback))
    return result


# --- Plain Django views in the document ------------------------------------------------
# The webhook receiver and the ops endpoints are plain Django views (no DRF on the hot path), so the
# generator does not see them; this hook describes them next to the API. Tests compare it with the views.

ERROR_ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
READINESS_COMPONENTS = ("database", "cache", "broker")
PLAIN_VIEW_SCHEMAS = {
    "WebhookAccepted": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["accepted"]},
            "event_id": {"type": "string", "format": "uuid"},
        },
        "required": ["status", "event_id"],
    },
    "WebhookDuplicate": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["duplicate"]},
            "event_id": {"type": "string", "format": "uuid", "description": "The event first received."},
        },
        "required": ["status", "event_id"],
    },
    "Liveness": {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
        "required": ["status"],
    },
    "ReadinessComponent": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "down"]},
            "service": {"type": "string", "description": "What backs it: database, redis, cache or broker."},
            "latency_ms": {"type": "integer"},
            "error": {"type": "string", "description": "Why it is down (an exception name, or TimeoutError)."},
        },
        "required": ["status", "service", "latency_ms"],
    },
    "Readiness": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "components": {
                "type": "object",
                "properties": {name: {"$ref": "#/components/schemas/ReadinessComponent"}
                               for name in READINESS_COMPONENTS},
                "required": list(READINESS_COMPONENTS),
            },
            "down": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The services that are down; present only when one is.",
            },
        },
        "required": ["status", "components"],
    },
}


def _error(description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": ERROR_ENVELOPE}}}
    if headers:
        response["headers"] = headers
    return response


def _json(description: str, component: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }


ALLOW = {"Allow": {"schema": {"type": "string"}, "description": "The methods this path serves."}}


def _plain_view_paths() -> dict:
    receiver = {
        "operationId": "webhook_receive",
        "summary": "Receive a webhook delivery",
        "description": (
            "The public receiver of a webhook endpoint (`path` from `/api/v1/webhooks/`). The body is "
            "verified as raw bytes against the endpoint's signature scheme (hmac_sha256, standard_webhooks, "
            "stripe, github, slack, shopify: each reads its own headers), stored, then processed in the "
            "background. Any content type is accepted. A delivery already received (same dedupe key) is "
            "answered 200 with the first event's id."
        ),
        "tags": ["webhooks"],
        "security": [],
        "parameters": [
            {
                "name": "path",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "The endpoint's path.",
            }
        ],
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": {}},
                "*/*": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "202": _json("Accepted: stored and queued for processing.", "WebhookAccepted"),
            "200": _json("Duplicate: this delivery was received before.", "WebhookDuplicate"),
            "400": _error("Empty body on an endpoint that does not verify signatures (VALIDATION_ERROR)."),
            "401": _error("Signature refused (SIGNATURE_INVALID)."),
            "404": _error("No webhook endpoint at this path (NOT_FOUND)."),
            "405": _error("Only POST (METHOD_NOT_ALLOWED).", ALLOW),
            "413": _error("Body larger than the endpoint's max_body_bytes (PAYLOAD_TOO_LARGE)."),
            "429": _error(
                "Too many deliveries to this endpoint (RATE_LIMIT_EXCEEDED).",
                {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
            ),
        },
    }
    healthz = {
        "operationId": "healthz",
        "summary": "Liveness",
        "description": "The process answers. Checks nothing else (see /readyz).",
        "tags": ["ops"],
        "security": [],
        "responses": {
            "200": _json("Alive.", "Liveness"),
            "405": _error("Only GET and HEAD (METHOD_NOT_ALLOWED).", ALLOW),
        },
    }
    readyz = {
        "operationId": "readyz",
        "summary": "Readiness",
        "description": (
            "The database, the cache and the broker each answer within READYZ_TIMEOUT seconds; "
            "otherwise 503, naming the services that are down."
        ),
        "tags": ["ops"],
        "security": [],
        "responses": {
            "200": _json("Ready: every component is ok.", "Readiness"),
            "405": _error("Only GET and HEAD (METHOD_NOT_ALLOWED).", ALLOW),
            "503": _json("Not ready: at least one component is down.", "Readiness"),
        },
    }
    metrics = {
        "operationId": "metrics",
        "summary": "Prometheus metrics",
        "description": (
            "Prometheus text exposition format: HTTP requests by route, and business figures read from "
            "the database at scrape time. When METRICS_TOKEN is set, it is required as a bearer token."
        ),
        "tags": ["ops"],
        "security": [{}, {"metricsToken": []}],
        "responses": {
            "200": {
                "description": "The metrics.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "401": _error("METRICS_TOKEN is set and the request does not carry it (NOT_AUTHENTICATED)."),
            "405": _error("Only GET and HEAD (METHOD_NOT_ALLOWED).", ALLOW),
        },
    }
    return {
        "/hooks/{path}": {"post": receiver},
        "/healthz": {"get": healthz},
        "/readyz": {"get": readyz},
        "/metrics": {"get": metrics},
    }


def plain_views_hook(result, generator, request, public):
    """Add the webhook receiver, /healthz, /readyz and /metrics (plain Django views) to the document.

    Their errors use the ``ErrorEnvelope`` component that every API operation already refers to.
    """
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in PLAIN_VIEW_SCHEMAS.items():
        schemas.setdefault(name, schema)
    components.setdefault("securitySchemes", {}).setdefault(
        "metricsToken",
        {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN, when the deployment sets one."},
    )
    result.setdefault("paths", {}).update(_plain_view_paths())
    return result
