"""The activity feed and the status widget."""
from rest_framework import serializers


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
