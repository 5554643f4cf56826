from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from integrations_site.api.serializers import StrictFieldsMixin

from ..choices import CredentialType
from ..models import (
    ConfigVersion,
    ConnectionCheck,
    Credential,
    ExternalStatus,
    Integration,
    StatusChange,
    UsageDaily,
)
from ..selectors import tenant_credential
from ..services.usage import default_range


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
            "id", "provider", "provider_name", "name", "description", "environment", "status", "health_state",
            "health_checked_at", "consecutive_failures", "last_success_at", "api_base_url", "test_endpoint",
            "status_endpoint", "status_mapping", "update_method", "polling_interval_seconds", "timeout_seconds",
            "retry_count", "settings", "user_scoped", "search_enabled", "limit_monthly_budget", "limit_tokens",
            "limit_requests_per_minute", "has_credentials", "credential", "created_at", "updated_at",
        ]
        read_only_fields = [
            "id", "status", "health_state", "health_checked_at", "consecutive_failures", "last_success_at",
            "created_at", "updated_at",
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
        return value

    def validate(self, attrs):
        provider = attrs.pop("provider", None)
        if self.instance is not None and provider and provider["slug"] != self.instance.provider.slug:
            raise serializers.ValidationError({"provider": ["The provider of an integration cannot be changed."]})
        if self.instance is None:
            attrs["provider_slug"] = provider["slug"] if provider else None
        return attrs


class CredentialOutSerializer(serializers.Serializer):
    has_credentials = serializers.BooleanField()
    type = serializers.CharField(allow_null=True)
    hint = serializers.CharField(allow_blank=True)
    status = serializers.CharField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class _CredentialIn(StrictFieldsMixin, serializers.Serializer):
    type = serializers.ChoiceField(choices=CredentialType.choices)


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
        fields = fields["fields"]
    return credential_type, fields


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
    }


def credential_out(credential: Credential | None) -> dict:
    data = connection_data(credential)
    return {k: data[k] for k in ("has_credentials", "type", "hint", "status", "version")} | {
        "updated_at": credential.updated_at if credential else None
    }


class ConfigVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConfigVersion
        fields = ["id", "number", "snapshot", "credential_version", "author", "reason", "created_at"]
        read_only_fields = fields


class CheckErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ConnectionCheckSerializer(serializers.ModelSerializer):
    check_id = serializers.UUIDField(source="id", read_only=True)
    error = serializers.SerializerMethodField()
    tested_at = serializers.DateTimeField(read_only=True)
    sample = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = ConnectionCheck
        fields = [
            "check_id", "kind", "state", "success", "status_code", "latency_ms", "error", "tested_at", "sample",
            "attempts", "url", "requested_by", "created_at", "started_at", "finished_at",
        ]
        read_only_fields = fields

    def get_error(self, obj) -> CheckErrorSerializer(allow_null=True):
        return {"code": obj.error_code, "message": obj.error_message} if obj.error_code else None


class QueuedCheckSerializer(serializers.Serializer):
    check_id = serializers.UUIDField()
    status = serializers.CharField(default="queued")


class HealthSerializer(serializers.Serializer):
    state = serializers.CharField()
    health_checked_at = serializers.DateTimeField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_error = CheckErrorSerializer(allow_null=True)
    success_rate_24h = serializers.FloatField(allow_null=True, help_text="Share of successful checks, 0..1.")
    checks_24h = serializers.IntegerField()
    next_check_at = serializers.DateTimeField(allow_null=True)


class ExternalStatusSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExternalStatus
        fields = [
            "id", "external_id", "raw_status", "canonical_status", "is_unknown", "first_seen_at", "last_seen_at",
            "last_changed_at",
        ]
        read_only_fields = fields


class StatusChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = StatusChange
        fields = ["id", "external_id", "old_canonical", "new_canonical", "old_raw", "new_raw", "changed_at"]
        read_only_fields = fields


class PollResultSerializer(serializers.Serializer):
    seen = serializers.IntegerField()
    changed = serializers.IntegerField()
    unknown = serializers.DictField(child=serializers.IntegerField(), help_text="Unknown raw values and their counts.")


class QueuedPollSerializer(serializers.Serializer):
    status = serializers.CharField(default="queued")


class CredentialPatchSerializer(serializers.Serializer):
    """Any of the fields of the stored credential's type (``type`` may be repeated, not changed)."""

    type = serializers.ChoiceField(choices=CredentialType.choices, required=False)


class CredentialPatchResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    credential_version = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


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


class UsedLimitSerializer(serializers.Serializer):
    used = serializers.JSONField(help_text="A number (budget: a decimal string).")
    limit = serializers.JSONField(allow_null=True)


class LimitsSerializer(serializers.Serializer):
    budget_percent = serializers.FloatField(allow_null=True)
    token_percent = serializers.FloatField(allow_null=True)
    rate_percent = serializers.FloatField(allow_null=True)
    budget = UsedLimitSerializer()
    tokens = UsedLimitSerializer()
    rate = UsedLimitSerializer()


class UsageQuerySerializer(serializers.Serializer):
    # "from" is a Python keyword: the field is renamed in __init__.
    to = serializers.DateField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from"] = serializers.DateField(required=False)

    def validate(self, attrs):
        start, end = default_range()
        start, end = attrs.get("from", start), attrs.get("to", end)
        if start > end:
            raise serializers.ValidationError({"from": ["Must not be after 'to'."]})
        if (end - start).days > 366:
            raise serializers.ValidationError({"from": ["The range may span at most 366 days."]})
        return {"start": start, "end": end}


class UsageDaySerializer(serializers.ModelSerializer):
    class Meta:
        model = UsageDaily
        fields = ["date", "requests", "errors", "webhooks", "tokens", "cost"]
        read_only_fields = fields


class UsageSerializer(serializers.Serializer):
    integration_id = serializers.UUIDField()
    to = serializers.DateField()
    days = UsageDaySerializer(many=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from"] = serializers.DateField()


class ActivityQuerySerializer(serializers.Serializer):
    time_range = serializers.ChoiceField(choices=["1h", "24h", "7d", "30d"], default="24h")
    limit = serializers.IntegerField(min_value=1, max_value=100, required=False)


ACTIVITY_TYPES = ["sync", "test", "connect", "disconnect", "webhook", "config"]
ACTIVITY_STATUSES = ["success", "failed", "running"]


class ActivityItemSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.ChoiceField(choices=ACTIVITY_TYPES)
    status = serializers.ChoiceField(choices=ACTIVITY_STATUSES)
    timestamp = serializers.DateTimeField()
    details = serializers.DictField()


class ActivitySerializer(serializers.Serializer):
    activities = ActivityItemSerializer(many=True)
    total = serializers.IntegerField()


class WidgetStatusSerializer(serializers.Serializer):
    integration_id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.CharField()
    connection_status = serializers.CharField(allow_null=True)
    health_state = serializers.CharField()
    last_connected_at = serializers.DateTimeField(allow_null=True)
    last_sync_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_null=True)
