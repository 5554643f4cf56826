from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from integrations_site.api.serializers import StrictFieldsMixin

from ..choices import DESCRIPTION_MAX_LENGTH, EVENT_TYPES, MAX_GRACE_SECONDS, URL_MAX_LENGTH
from ..models import NotificationAttempt, NotificationDelivery, NotificationEndpoint
from ..validators import URL_PATTERN, url_problem


@extend_schema_field({"type": "string", "maxLength": URL_MAX_LENGTH, "pattern": URL_PATTERN})
class EndpointUrlField(serializers.CharField):
    """An absolute http(s) URL (validators.url_problem); the address policy applies when each delivery is sent."""

    def __init__(self, **kwargs):
        super().__init__(max_length=URL_MAX_LENGTH, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        problem = url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class NotificationEndpointSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    url = EndpointUrlField(help_text="Where deliveries are POSTed (JSON, signed per Standard Webhooks).")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), min_length=1, max_length=20, required=False,
        help_text="The notification types sent here (each once; repeats are dropped). Every type when omitted "
                  "at creation.",
    )
    description = serializers.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False, help_text="Turning it on again clears disabled_reason.")

    class Meta:
        model = NotificationEndpoint
        fields = [
            "id", "url", "events", "active", "description", "disabled_reason", "disabled_at",
            "previous_secret_expires_at", "secret_rotated_at", "created_at", "updated_at",
        ]
        read_only_fields = [
            "id", "disabled_reason", "disabled_at", "previous_secret_expires_at", "secret_rotated_at", "created_at",
            "updated_at",
        ]


class NotificationEndpointCreatedSerializer(NotificationEndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="'whsec_' + base64 of the key. Shown once; store it now.")

    class Meta(NotificationEndpointSerializer.Meta):
        fields = [*NotificationEndpointSerializer.Meta.fields, "secret"]


class NotificationRotateSecretSerializer(StrictFieldsMixin, serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_GRACE_SECONDS,
        help_text="How long deliveries are signed with the old secret too (default 86400; 0 = not at all).",
    )


class NotificationRotatedSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new secret. Shown once; store it now.")
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)


class NotificationDeliveryErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class NotificationAttemptSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()

    class Meta:
        model = NotificationAttempt
        fields = ["attempted_at", "outcome", "response_status", "latency_ms", "error"]
        read_only_fields = fields

    @extend_schema_field(NotificationDeliveryErrorSerializer(allow_null=True))
    def get_error(self, obj) -> dict | None:
        return {"code": obj.error_code, "message": obj.error_message} if obj.error_code else None


class NotificationDeliverySerializer(serializers.ModelSerializer):
    endpoint = serializers.UUIDField(source="endpoint_id", read_only=True)
    last_error = NotificationDeliveryErrorSerializer(allow_null=True, read_only=True)

    class Meta:
        model = NotificationDelivery
        fields = [
            "id", "endpoint", "notification_id", "type", "status", "attempts", "response_status", "latency_ms",
            "next_attempt_at", "last_error", "delivered_at", "created_at", "updated_at",
        ]
        read_only_fields = fields


class NotificationDeliveryDetailSerializer(NotificationDeliverySerializer):
    payload = serializers.JSONField(read_only=True, help_text='The body sent: {"type", "timestamp", "tenant_id", '
                                                              '"data"}.')
    history = NotificationAttemptSerializer(many=True, read_only=True, help_text="Every attempt, oldest first.")

    class Meta(NotificationDeliverySerializer.Meta):
        fields = [*NotificationDeliverySerializer.Meta.fields, "payload", "history"]
        read_only_fields = fields
