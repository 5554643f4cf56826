"""Connection tests and health: a check's outcome, a queued check, the cached health state."""
from rest_framework import serializers

from ...models import ConnectionCheck


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
    failing_since = serializers.DateTimeField(allow_null=True, help_text="First failed check of the current streak.")
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_error = CheckErrorSerializer(allow_null=True)
    success_rate_24h = serializers.FloatField(allow_null=True, help_text="Share of successful checks, 0..1.")
    checks_24h = serializers.IntegerField()
    next_check_at = serializers.DateTimeField(allow_null=True)
