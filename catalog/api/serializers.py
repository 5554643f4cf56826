from rest_framework import serializers

from integrations_site.api.serializers import StrictFieldsMixin

from ..choices import Audience, ProviderStatus
from ..models import IntegrationProvider

PUBLIC_FIELDS = [
    "id", "slug", "name", "display_name", "description", "category", "status", "audience", "auth_type",
    "capabilities", "supported_sync_directions", "supports_webhooks", "supports_polling", "supports_search",
    "supports_oauth", "searchable_entities", "available_entities", "requires_user_scoping", "credential_fields",
    "default_api_base_url", "default_test_endpoint", "default_status_endpoint", "default_status_mapping",
    "default_webhook_signature_scheme", "icon", "color", "version", "documentation_url", "is_premium",
    "required_plan", "created_at", "updated_at",
]


class OAuthConfigField(serializers.JSONField):
    """``oauth_config``; ``client_secret`` may be written but is never read back."""

    def to_representation(self, value):
        return {k: v for k, v in (value or {}).items() if k != "client_secret"}


class ProviderAdminSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    oauth_config = OAuthConfigField(required=False, help_text="client_secret is write-only and stored encrypted.")
    has_oauth_client_secret = serializers.BooleanField(read_only=True)

    class Meta:
        model = IntegrationProvider
        fields = PUBLIC_FIELDS + ["oauth_config", "has_oauth_client_secret", "search_config", "entity_config"]
        read_only_fields = ["id", "created_at", "updated_at"]
        # A taken slug is a 409 CONFLICT from the service, not a 400 here.
        extra_kwargs = {"slug": {"validators": []}}

    def validate_oauth_config(self, value):
        from django.core.exceptions import ValidationError as DjangoValidationError

        from ..validators import validate_oauth_config

        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        try:
            validate_oauth_config({k: v for k, v in value.items() if k != "client_secret"})
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        if "client_secret" in value and not isinstance(value["client_secret"], str):
            raise serializers.ValidationError({"client_secret": "Must be a string."})
        return value


class ProviderCatalogSerializer(serializers.ModelSerializer):
    """What tenants see of a provider: no OAuth client details."""

    minimum_plan = serializers.CharField(read_only=True)

    class Meta:
        model = IntegrationProvider
        fields = [f for f in PUBLIC_FIELDS if f not in ("audience",)] + ["minimum_plan"]
        read_only_fields = fields


class ProviderStatusSerializer(StrictFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=ProviderStatus.choices)


class ProviderAudienceSerializer(StrictFieldsMixin, serializers.Serializer):
    audience = serializers.ChoiceField(choices=Audience.choices)
