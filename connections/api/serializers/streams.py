"""An integration's event stream as ``GET /integrations/{id}/stream`` answers it."""
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from ...choices import StreamState


class StreamErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    at = serializers.DateTimeField(allow_null=True, help_text="When it happened; null when it is not an event.")

    def to_representation(self, instance):
        # The consumer stores the time as ISO text (lease JSON); written here as every other datetime is.
        at = instance.get("at")
        return super().to_representation({**instance, "at": parse_datetime(at) if isinstance(at, str) else at})


class StreamStateSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=StreamState.choices)
    consumer = serializers.CharField(allow_null=True, help_text="The consumer holding the stream; null when none.")
    connected_at = serializers.DateTimeField(allow_null=True)
    last_event_at = serializers.DateTimeField(allow_null=True)
    last_event_id = serializers.CharField(allow_null=True, help_text="The last event applied (sent on reconnect).")
    events_total = serializers.IntegerField(help_text="Events applied.")
    reconnects = serializers.IntegerField()
    last_error = StreamErrorSerializer(allow_null=True)
