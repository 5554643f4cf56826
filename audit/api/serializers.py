from rest_framework import serializers

from ..models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id", "tenant", "actor", "action", "target_type", "target_id", "target_repr", "outcome", "changes",
            "request_id", "ip", "created_at",
        ]
        read_only_fields = fields
