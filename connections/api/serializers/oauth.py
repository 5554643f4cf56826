"""OAuth2 connections: starting a connect flow, disconnecting, and the user-scoped connections."""
from rest_framework import serializers

from integrations_site.api.serializers import StrictFieldsMixin

from ...models import Credential


class ConnectOAuthSerializer(StrictFieldsMixin, serializers.Serializer):
    return_url = serializers.CharField(
        max_length=2000, trim_whitespace=False,
        help_text="https URL on a host in the tenant's allowed_return_hosts; the callback redirects there.",
    )


class AuthorizationSerializer(serializers.Serializer):
    authorization_url = serializers.URLField()
    state = serializers.CharField()


class DisconnectSerializer(serializers.Serializer):
    disconnected = serializers.BooleanField()
    revoked_at_provider = serializers.BooleanField(allow_null=True, help_text="null when there was nothing to revoke.")
    revoke_error = serializers.CharField(allow_blank=True)


class MeConnectionSerializer(serializers.Serializer):
    connected = serializers.BooleanField()
    connection_id = serializers.UUIDField(allow_null=True)
    status = serializers.CharField(allow_null=True)
    last_connected_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField())


def me_connection_data(credential: Credential | None) -> dict:
    connected = bool(credential and credential.is_set and credential.status == "active")
    return {
        "connected": connected,
        "connection_id": credential.pk if credential and credential.is_set else None,
        "status": credential.status if credential else None,
        "last_connected_at": credential.last_refreshed_at or credential.updated_at if credential else None,
        "expires_at": credential.expires_at if credential and credential.is_set else None,
        "scopes": (credential.public_fields or {}).get("scopes", []) if credential and credential.is_set else [],
    }


class UserConnectionSerializer(serializers.ModelSerializer):
    """Who is connected to a user-scoped integration; never a token."""

    connection_id = serializers.UUIDField(source="id", read_only=True)
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    connected = serializers.SerializerMethodField()
    scopes = serializers.SerializerMethodField()

    class Meta:
        model = Credential
        fields = ["connection_id", "user_id", "username", "connected", "status", "expires_at", "scopes",
                  "created_at", "updated_at"]
        read_only_fields = fields

    def get_connected(self, obj) -> bool:
        return obj.is_set and obj.status == "active"

    def get_scopes(self, obj) -> list[str]:
        return (obj.public_fields or {}).get("scopes", []) if obj.is_set else []
