"""The list's columns as a ModelSerializer, the provider as its slug (SlugRelatedField)."""
from rest_framework import serializers

from .models import Integration, Provider


class IntegrationSerializer(serializers.ModelSerializer):
    provider = serializers.SlugRelatedField(slug_field="slug", queryset=Provider.objects.all())
    provider_name = serializers.CharField(source="provider.display_name", read_only=True)

    class Meta:
        model = Integration
        fields = [
            "id", "provider", "provider_name", "name", "description", "environment", "status", "health_state",
            "health_checked_at", "consecutive_failures", "last_success_at", "api_base_url", "test_endpoint",
            "status_endpoint", "status_mapping", "update_method", "polling_interval_seconds", "timeout_seconds",
            "retry_count", "settings", "user_scoped", "search_enabled", "limit_monthly_budget", "limit_tokens",
            "limit_requests_per_minute", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "status", "health_state", "health_checked_at", "consecutive_failures",
                            "last_success_at", "created_at", "updated_at"]
