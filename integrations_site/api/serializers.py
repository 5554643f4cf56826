"""Shared serializer pieces."""
from collections.abc import Mapping

from rest_framework import serializers


class StrictFieldsMixin:
    """Unknown or read-only fields are rejected with 400, never silently dropped; so is a number given for a
    text field (DRF's CharField would store ``7`` as ``"7"``)."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            writable = {name: field for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - set(writable))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown or read-only field."] for name in unknown})
            not_text = {name: [serializers.CharField.default_error_messages["invalid"]]
                        for name, value in data.items()
                        if isinstance(writable[name], serializers.CharField)
                        and value is not None and not isinstance(value, str)}
            if not_text:
                raise serializers.ValidationError(not_text)
        return super().to_internal_value(data)


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()
    request_id = serializers.CharField()


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()
