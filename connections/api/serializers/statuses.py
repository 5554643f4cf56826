"""Polled external statuses, their changes, and the outcome of a poll."""
from rest_framework import serializers

from ...models import ExternalStatus, StatusChange


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
