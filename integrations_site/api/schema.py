"""drf-spectacular: the error envelope on every operation and our auth schemes."""
from django.core.exceptions import FieldDoesNotExist
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as BaseAutoSchema

from .serializers import ErrorEnvelopeSerializer

ERROR_STATUSES = {
    "400": "Validation error (VALIDATION_ERROR, URL_NOT_ALLOWED, …)",
    "401": "Not authenticated (NOT_AUTHENTICATED)",
    "403": "Permission denied (PERMISSION_DENIED)",
    "404": "Not found (NOT_FOUND, INTEGRATION_NOT_FOUND, PROVIDER_NOT_FOUND)",
    "409": "Conflict (CONFLICT)",
    "429": "Rate limited (RATE_LIMIT_EXCEEDED, LIMIT_EXCEEDED)",
}


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
        return super()._map_serializer_field(field, direction, bypass_extensions=bypass_extensions)

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
