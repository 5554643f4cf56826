"""The AutoSchema (the error envelope on every operation, strict bodies), the filter and auth extensions,
and the hook that shows optional-slash routes in the contract's form."""

from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as BaseAutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from ..serializers import ErrorEnvelopeSerializer, StrictFieldsMixin
from .rules import ERROR_STATUSES, _model_field_allows_blank, _validated_shape


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
