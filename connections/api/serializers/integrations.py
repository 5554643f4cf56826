"""An integration as the API shows it (flat config, credential summary), and its config versions."""
import functools

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from integrations_site.api.rows import RowRepresentation
from integrations_site.api.serializers import StrictFieldsMixin

from ... import adapters
from ...models import ConfigVersion, Credential, Integration
from ...selectors import credential_summary, tenant_credential


class CredentialSummarySerializer(serializers.ModelSerializer):
    """What is ever shown of a credential: its type, a hint, status and version."""

    class Meta:
        model = Credential
        fields = ["type", "hint", "status", "version"]
        read_only_fields = fields


class IntegrationSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    provider = serializers.CharField(
        source="provider.slug", help_text="Provider slug; set at creation, not changeable."
    )
    provider_name = serializers.CharField(source="provider.display_name", read_only=True)
    has_credentials = serializers.SerializerMethodField()
    credential = serializers.SerializerMethodField()

    class Meta:
        model = Integration
        fields = [
            "id", "provider", "provider_name", "name", "description", "environment", "status", "disabled_reason",
            "health_state", "health_checked_at", "consecutive_failures", "last_success_at", "api_base_url",
            "test_endpoint", "status_endpoint", "stream_endpoint", "status_mapping", "update_method",
            "polling_interval_seconds",
            "timeout_seconds", "retry_count", "settings", "user_scoped", "search_enabled", "limit_monthly_budget",
            "limit_tokens", "limit_requests_per_minute", "has_credentials", "credential", "created_at", "updated_at",
        ]
        read_only_fields = [
            "id", "status", "disabled_reason", "health_state", "health_checked_at", "consecutive_failures",
            "last_success_at", "created_at", "updated_at",
        ]
        extra_kwargs = {"name": {"validators": []}}

    def get_has_credentials(self, obj) -> bool:
        credential = tenant_credential(obj)
        return bool(credential and credential.is_set)

    @extend_schema_field(CredentialSummarySerializer(allow_null=True))
    def get_credential(self, obj) -> dict | None:
        credential = tenant_credential(obj)
        if credential is None or not credential.is_set:
            return None
        # A plain dict: a nested serializer per row costs more than the rest of the row.
        return {"type": credential.type, "hint": credential.hint, "status": credential.status,
                "version": credential.version}

    def validate_settings(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        problems = adapters.settings_problems(value)
        if problems:
            raise serializers.ValidationError(problems)
        return value

    def validate(self, attrs):
        provider = attrs.pop("provider", None)
        if self.instance is not None and provider and provider["slug"] != self.instance.provider.slug:
            raise serializers.ValidationError({"provider": ["The provider of an integration cannot be changed."]})
        if self.instance is None:
            attrs["provider_slug"] = provider["slug"] if provider else None
        return attrs


@functools.cache
def integration_rows_representation() -> RowRepresentation:
    """IntegrationSerializer's answer from ``selectors.integration_rows`` rows (the list and the detail)."""
    return RowRepresentation(IntegrationSerializer, computed={
        "has_credentials": lambda row: bool(row["credential_set"]),
        "credential": credential_summary,
    })


class ConfigVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConfigVersion
        fields = ["id", "number", "snapshot", "credential_version", "author", "reason", "created_at"]
        read_only_fields = fields
