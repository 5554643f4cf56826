"""Credentials in and out: one input shape per type, what is shown of a stored one (never a secret)."""
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from integrations_site.api.serializers import StrictFieldsMixin

from ...choices import CredentialType
from ...models import Credential


class CredentialOutSerializer(serializers.Serializer):
    has_credentials = serializers.BooleanField()
    type = serializers.CharField(allow_null=True)
    hint = serializers.CharField(allow_blank=True)
    status = serializers.CharField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)
    has_client_certificate = serializers.BooleanField(help_text="A client certificate for mutual TLS is set.")
    updated_at = serializers.DateTimeField(allow_null=True)


class _CredentialIn(StrictFieldsMixin, serializers.Serializer):
    type = serializers.ChoiceField(choices=CredentialType.choices)
    client_certificate = serializers.CharField(
        required=False, trim_whitespace=False,
        help_text="PEM client certificate for mutual TLS (with client_key); not secret, never shown back.",
    )
    client_key = serializers.CharField(
        write_only=True, required=False, trim_whitespace=False,
        help_text="The client certificate's unencrypted PEM private key; stored encrypted.",
    )


class ApiKeyCredentialSerializer(_CredentialIn):
    api_key = serializers.CharField(write_only=True, trim_whitespace=False)
    header_name = serializers.CharField(required=False, default="X-API-Key")


class BearerCredentialSerializer(_CredentialIn):
    token = serializers.CharField(write_only=True, trim_whitespace=False)


class BasicCredentialSerializer(_CredentialIn):
    username = serializers.CharField()
    password = serializers.CharField(write_only=True, trim_whitespace=False)


class OAuth2CredentialSerializer(_CredentialIn):
    access_token = serializers.CharField(write_only=True, trim_whitespace=False)
    refresh_token = serializers.CharField(write_only=True, required=False, trim_whitespace=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField(), required=False)
    token_type = serializers.CharField(required=False)


class CustomCredentialSerializer(_CredentialIn):
    fields = serializers.DictField(help_text="Validated against the provider's credential_fields.")

    def validate_fields(self, value):
        for name, item in value.items():
            if not isinstance(item, str):
                raise serializers.ValidationError({name: "Must be a string."})
        return value


CREDENTIAL_SERIALIZERS = {
    CredentialType.API_KEY: ApiKeyCredentialSerializer,
    CredentialType.BEARER: BearerCredentialSerializer,
    CredentialType.BASIC: BasicCredentialSerializer,
    CredentialType.OAUTH2: OAuth2CredentialSerializer,
    CredentialType.CUSTOM: CustomCredentialSerializer,
}


CredentialInSerializer = PolymorphicProxySerializer(
    component_name="CredentialInput",
    serializers={key.value: cls for key, cls in CREDENTIAL_SERIALIZERS.items()},
    resource_type_field_name="type",
)


def validate_credential_input(data) -> tuple[str, dict]:
    """Pick the serializer by ``type``; return (type, fields for the adapter)."""
    if not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
    credential_type = data.get("type")
    if credential_type not in CREDENTIAL_SERIALIZERS:
        allowed = ", ".join(CredentialType.values)
        message = f"Must be one of: {allowed}." if credential_type else "This field is required."
        raise serializers.ValidationError({"type": [message]})
    serializer = CREDENTIAL_SERIALIZERS[credential_type](data=data)
    serializer.is_valid(raise_exception=True)
    fields = dict(serializer.validated_data)
    fields.pop("type")
    if credential_type == CredentialType.CUSTOM:
        tls = {name: fields[name] for name in ("client_certificate", "client_key") if name in fields}
        fields = {**fields["fields"], **tls}
    return credential_type, fields


class CredentialPatchSerializer(serializers.Serializer):
    """Any of the fields of the stored credential's type (``type`` may be repeated, not changed)."""

    type = serializers.ChoiceField(choices=CredentialType.choices, required=False)


class CredentialPatchResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    credential_version = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class ConnectionSerializer(serializers.Serializer):
    status = serializers.CharField(allow_null=True, help_text="active, expired, revoked or error; null if never set.")
    has_credentials = serializers.BooleanField()
    type = serializers.CharField(allow_null=True)
    hint = serializers.CharField(allow_blank=True)
    version = serializers.IntegerField(allow_null=True)
    last_validated_at = serializers.DateTimeField(allow_null=True)
    validation_error = serializers.CharField(allow_blank=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField())
    connected_at = serializers.DateTimeField(allow_null=True)
    has_client_certificate = serializers.BooleanField(help_text="A client certificate for mutual TLS is set.")


def connection_data(credential: Credential | None) -> dict:
    is_set = bool(credential and credential.is_set)
    return {
        "status": credential.status if credential else None,
        "has_credentials": is_set,
        "type": credential.type if is_set else None,
        "hint": credential.hint if is_set else "",
        "version": credential.version if credential else None,
        "last_validated_at": credential.last_validated_at if credential else None,
        "validation_error": credential.validation_error if credential else "",
        "expires_at": credential.expires_at if is_set else None,
        "scopes": (credential.public_fields or {}).get("scopes", []) if is_set else [],
        "connected_at": credential.updated_at if is_set else None,
        "has_client_certificate": is_set and bool((credential.public_fields or {}).get("client_certificate")),
    }


def credential_out(credential: Credential | None) -> dict:
    data = connection_data(credential)
    return {k: data[k] for k in ("has_credentials", "type", "hint", "status", "version", "has_client_certificate")} | {
        "updated_at": credential.updated_at if credential else None
    }
